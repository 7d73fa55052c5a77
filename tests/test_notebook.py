"""The walkthrough notebook runs top to bottom (fast mode) on this backend."""

from __future__ import annotations

import os

import nbformat
from nbclient import NotebookClient

from conftest import BACKEND, ROOT


def test_vae_walkthrough_executes(tmp_path, monkeypatch):
    notebook = nbformat.read(ROOT / "notebooks" / "vae_walkthrough.ipynb", as_version=4)
    monkeypatch.setenv("KGEN_FAST", "1")
    monkeypatch.setenv("KERAS_BACKEND", BACKEND)
    client = NotebookClient(notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    assert f"Keras backend: {BACKEND}" in "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 4  # the four figures
    assert os.path.isdir(tmp_path / "runs")
