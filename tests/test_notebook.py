"""The walkthrough notebook runs top to bottom (fast mode) on this backend."""

from __future__ import annotations

import os

import nbformat
import pytest
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


# The latent-HMC walkthrough compiles a dozen small programs and trains an AE: about half a minute on JAX,
# minutes on PyTorch when the CPU is shared (eager ops). Its code is backend-neutral and
# tests/test_latent_hmc.py runs the same functions on all three backends, so the notebook runs on JAX only.
@pytest.mark.skipif(BACKEND != "jax", reason="the latent-HMC notebook runs on the jax backend only (over a minute elsewhere)")
def test_latent_hmc_notebook_executes(tmp_path, monkeypatch):
    notebook = nbformat.read(ROOT / "notebooks" / "latent_hmc.ipynb", as_version=4)
    assert not [c for c in notebook.cells if c.cell_type == "code" and c.get("outputs")]  # committed without outputs
    monkeypatch.setenv("KGEN_NOTEBOOK_FAST", "1")
    monkeypatch.setenv("KERAS_BACKEND", BACKEND)
    client = NotebookClient(notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    assert f"Keras backend: {BACKEND} | fast: True" in "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 4  # theta, latent, decoded, moments
