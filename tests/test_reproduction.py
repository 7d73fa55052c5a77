"""The reproduction table (benchmarks/reproduction.py, `python benchmarks/quality.py --all`): its figures are
metrics `kgen evaluate` really writes, and the table renders stored cells, marks missing ones and rewrites
the docs page between its markers. The long training runs themselves are not part of the suite."""

from __future__ import annotations

import re
import sys

import pytest
from conftest import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))

import reproduction

pytestmark = pytest.mark.one_backend


def test_every_figure_is_a_documented_metric():
    documented = set(re.findall(r"`([a-z_0-9]+)`", (ROOT / "docs" / "evaluation.md").read_text()))
    for experiment in reproduction.EXPERIMENTS:
        for figure in experiment.figures:
            assert figure.metric in documented, (experiment.key, figure.metric)
            assert figure.standard_error is None or figure.standard_error in documented, figure.standard_error
        assert set(experiment.extra) <= documented, experiment.key


def test_the_table_shows_stored_cells_and_marks_the_missing_ones(tmp_path):
    record = {"train_command": "kgen train vae --dataset mnist --run-dir RUN", "evaluate_command": "kgen evaluate RUN",
              "train_seconds": 90.0, "evaluate_seconds": 30.0, "backend": "tensorflow",
              "metrics": {"negative_elbo": 141.234, "negative_elbo_se": 1.5, "iwae_nll": 137.0, "iwae_nll_se": 1.4}}
    semi = {**record, "metrics": {"error_rate": 0.0725}}
    results = {"machine": {"cpu_model": "Some CPU", "cores_available": 2, "date": "2026-12-02T00:00:00"},
               "cells": {"vae@mnist-4.5k": record, "aae_semi100@fashion-60k": semi}}
    markdown = reproduction.table(results)
    vae_rows = [row for row in markdown.splitlines() if "−ELBO (nats), defaults" in row]
    assert len(vae_rows) == 1
    assert "| 141.2 ± 1.5 | not run |" in vae_rows[0]
    assert "| 2.0 / – |" in vae_rows[0]  # (90 + 30) s on MNIST, Fashion not run
    semi_row = next(row for row in markdown.splitlines() if "100 labels" in row)
    assert "| not run | 7.2% |" in semi_row or "| not run | 7.3% |" in semi_row
    # every experiment has a row per figure, stored or not
    assert sum(len(e.figures) for e in reproduction.EXPERIMENTS) == markdown.count("\n| ") + 1 - 2

    page = tmp_path / "page.md"
    page.write_text("before\n<!-- bench:reproduction -->\nold\n<!-- /bench:reproduction -->\nafter\n")
    json_path = tmp_path / "quality.json"
    import json

    json_path.write_text(json.dumps(results))
    reproduction.main(["--report-only", "--json", str(json_path), "--docs", str(page)])
    text = page.read_text()
    assert text.startswith("before\n") and text.endswith("after\n") and "old" not in text
    assert "141.2 ± 1.5" in text


def test_an_existing_run_folder_is_never_reused(tmp_path):
    (tmp_path / "mnist-4.5k-vae").mkdir()
    with pytest.raises(SystemExit, match="exists"):
        reproduction.run_experiment(reproduction.BY_KEY["vae"], "mnist-4.5k", tmp_path, "tensorflow", None)
