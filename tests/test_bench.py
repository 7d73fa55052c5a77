"""The benchmark harness itself (benchmarks/bench.py, report.py) works: one tiny measurement in this process.

Never a timed assertion: only that a run writes the JSON with its fields, that the ratios are positive
and finite, and that the report renders and rewrites marked sections of a page.
"""

from __future__ import annotations

import json
import math
import sys

import pytest
from conftest import BACKEND, ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))

import bench
import report


def test_one_round_of_two_steps_writes_the_json_and_the_tables(tmp_path):
    out = tmp_path / "results"
    bench.main(["--in-process", "--backends", BACKEND, "--suites", "ae-family", "--only", "linear_ae",
                "--impls", "kgen", "keras", "--steps", "2", "--warmup", "1", "--rounds", "1", "--label", "test",
                "--out", str(out)])
    result = json.loads((out / "bench.json").read_text())
    assert not (out / "bench.partial.json").exists()
    assert {"schema", "machine", "settings", "suites"} <= set(result)
    machine = result["machine"]
    for key in ("cpu_model", "cores", "flags", "sgemm_gflops", "sgemm_gflops_per_round", "versions", "date",
                "load_average_per_round"):
        assert key in machine, key
    assert {"avx512_bf16", "amx_bf16"} <= set(machine["flags"])
    assert result["settings"]["steps"] == {"ae-family": 2}
    assert result["settings"]["command"].startswith("python benchmarks/bench.py --in-process")
    rows = result["suites"]["ae-family"]["rows"]
    assert {(r["impl"], r["backend"]) for r in rows} == {("kgen", BACKEND), ("keras", BACKEND)}
    for row in rows:
        assert not row.get("errors"), row.get("errors")
        assert len(row["samples_per_s"]) == 1 and row["median_samples_per_s"] > 0
    kgen = next(r for r in rows if r["impl"] == "kgen")
    ratio = kgen["vs_keras"]
    assert len(ratio["ratios"]) == 1
    assert all(math.isfinite(r) and r > 0 for r in ratio["ratios"] + [ratio["median"]])

    text = (out / "bench.md").read_text()
    assert "kgen / Keras" in text and "linear_ae" in text

    page = tmp_path / "speed.md"
    page.write_text("intro\n<!-- bench:machine -->\nold\n<!-- /bench:machine -->\n"
                    "<!-- bench:ae-family -->\nold\n<!-- /bench:ae-family -->\n<!-- bench:gan -->\nkept\n<!-- /bench:gan -->\n")
    report.main([str(out / "bench.json"), "--docs", str(page)])
    rewritten = page.read_text()
    assert "old" not in rewritten and "kept" in rewritten and "linear_ae" in rewritten
    assert rewritten.startswith("intro\n<!-- bench:machine -->\n")

    # --prefix: a second machine's sections beside the first's; the unprefixed ones are left alone
    page.write_text(rewritten + "<!-- bench:other-machine -->\nold\n<!-- /bench:other-machine -->\n"
                    "<!-- bench:other-ae-family -->\nold\n<!-- /bench:other-ae-family -->\n")
    report.main([str(out / "bench.json"), "--docs", str(page), "--prefix", "other"])
    second = page.read_text()
    assert "old" not in second and second.startswith(rewritten)
    assert second.count("linear_ae") == 2 * rewritten.count("linear_ae")


def test_median_of_per_round_ratios_and_steps_per_suite():
    import harness

    ratio = harness.median_ratio([10.0, 30.0, 20.0], [10.0, 10.0, 10.0])
    assert ratio == {"ratios": [1.0, 3.0, 2.0], "median": 2.0}
    assert report.verdict(ratio) == ">= 1"
    assert report.verdict({"ratios": [0.9, 1.05, 0.95], "median": 0.95}) == "noise"
    assert "below" in report.verdict({"ratios": [0.9, 0.8], "median": 0.85})
    assert bench.parse_steps(["vae=60", "gan=32"]) == {"vae": 60, "gan": 32}
    assert bench.parse_steps(["64"]) == {"*": 64}
    with pytest.raises(ValueError):
        bench.parse_steps(["nosuch=3"])
