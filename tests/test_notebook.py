"""Every notebook in notebooks/ runs top to bottom in fast mode (KGEN_FAST=1); none is committed with outputs.

A notebook whose fast mode is quick runs on every backend; a slower one runs on one backend per suite
(``make test`` runs the suite once per backend), chosen by a stable hash of its file name, so that the
notebooks are spread over the backends and each run of ``make test`` executes each notebook once.
"""

from __future__ import annotations

import ast
import hashlib
import math
import re
import signal
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from conftest import BACKEND, ROOT

BACKENDS = ("tensorflow", "jax", "torch")
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
# Wall seconds of each notebook's fast mode, measured on the loaded 2-core development machine (slowest
# backend; imports included). Below QUICK_SECONDS a notebook runs on every backend. A notebook missing here
# counts as slow.
FAST_SECONDS = {
    "vae_walkthrough.ipynb": 90,
    "autoencoders.ipynb": 170,
    "gans.ipynb": 185,
    "adversarial_autoencoders.ipynb": 65,
    "tune_and_serve.ipynb": 60,
    "latent_hmc.ipynb": 60,
}
QUICK_SECONDS = 20


def backends_for(name: str) -> tuple[str, ...]:
    """The backends a notebook runs on: all when its fast mode is quick, else one by a hash of its name."""
    if FAST_SECONDS.get(name, math.inf) < QUICK_SECONDS:
        return BACKENDS
    return (BACKENDS[int(hashlib.sha256(name.encode()).hexdigest(), 16) % len(BACKENDS)],)


def numbers(text: str) -> list[float]:
    return [float(x) for x in re.findall(r"-?\d+(?:\.\d+)?(?:e-?\d+)?", text)]


def line(text: str, start: str) -> str:
    """The first printed line starting with ``start`` (its rest), failing when there is none."""
    found = [row[len(start):] for row in text.splitlines() if row.startswith(start)]
    assert found, f"the notebook printed no line starting {start!r}"
    return found[0]


# What each notebook shows: its figures (image/png outputs) and facts it prints, checked on fast-mode runs
# (tiny networks after a few steps: shapes and finite numbers, not quality).
def check_vae_walkthrough(text: str, workdir: Path) -> None:
    assert (workdir / "runs").is_dir()


def check_autoencoders(text: str, workdir: Path) -> None:
    assert "is larger than the input" in line(text, "refused: ")
    tied, untied = numbers(line(text, "parameters: ").replace(",", ""))
    assert 0 < tied < untied
    angles = ast.literal_eval(line(text, "principal angles (degrees): "))
    assert len(angles) == 6 and all(0 <= a <= 90 for a in angles)
    noisy, denoised = numbers(line(text, "PSNR over the test digits: "))
    assert math.isfinite(noisy) and math.isfinite(denoised)
    for name in ("contractive (λ = 1): ", "plain (λ = 0): "):
        norm = numbers(line(text, name).split("‖J(x)‖_F over the test digits ")[1])[0]
        assert math.isfinite(norm) and norm > 0
    assert numbers(line(text, "test pseudo-log-likelihood: "))[0] < 0


def check_gans(text: str, workdir: Path) -> None:
    for name in ("gan (minimax)", "gan (non-saturating)", "dcgan"):
        fids = ast.literal_eval(line(text, f"fid per epoch, {name}: "))
        assert len(fids) == 1 and all(math.isfinite(f) and f >= 0 for f in fids)  # fast mode: 1 epoch
    estimates = ast.literal_eval(line(text, "wasserstein estimate per epoch: "))
    assert set(estimates) == {"wgan", "wgan_gp"} and all(math.isfinite(v) for vs in estimates.values() for v in vs)
    assert 0 <= numbers(line(text, "cgan label accuracy: "))[0] <= 100


def check_adversarial_autoencoders(text: str, workdir: Path) -> None:
    errors = ast.literal_eval(line(text, "semi-supervised test error: "))
    assert set(errors) == {10, 20} and all(0 <= float(e.rstrip("%")) <= 100 for e in errors.values())
    for name in ("marginal entropy 5 (default): ", "marginal entropy 0 (the paper): "):
        used, clusters, error = numbers(line(text, name))
        assert clusters == 4 and 1 <= used <= clusters and 0 <= error <= 100


def check_tune_and_serve(text: str, workdir: Path) -> None:
    assert line(text, "signatures: ") == "reconstruct, encode, decode, generate, sample"
    assert "kgen and keras blocked" in text
    assert text.count("POST /v1/models/vae-mnist:predict") == 7  # 5 exported bodies and 2 of the notebook's
    assert text.count('response: {"predictions": ') == 7
    assert numbers(line(text, f"served reconstructions vs Keras on {BACKEND}: max |difference| "))[0] < 1e-4


def check_latent_hmc(text: str, workdir: Path) -> None:
    assert "| fast: True" in line(text, "Keras backend: ")
    for density in ("pullback", "prior   "):
        acceptance = numbers(line(text, f"{density}: step size ").split("acceptance ")[1])[0]
        assert 0 < acceptance <= 1
    for sampler in ("theta_hmc", "latent_hmc", "latent_hmc_prior"):
        ess_per_grad, ess_per_second = numbers(line(text, sampler + " "))[:2]
        assert ess_per_grad > 0 and ess_per_second > 0


EXPECTED = {  # notebook: (figures, check)
    "vae_walkthrough.ipynb": (4, check_vae_walkthrough),
    "autoencoders.ipynb": (8, check_autoencoders),
    "gans.ipynb": (8, check_gans),
    "adversarial_autoencoders.ipynb": (5, check_adversarial_autoencoders),
    "tune_and_serve.ipynb": (3, check_tune_and_serve),
    "latent_hmc.ipynb": (4, check_latent_hmc),  # theta, latent, decoded trajectories; moments
}


def test_notebooks_are_spread_over_the_backends():
    slow = [path.name for path in NOTEBOOKS if len(backends_for(path.name)) == 1]
    assert len({backends_for(name)[0] for name in slow}) == min(len(slow), len(BACKENDS))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_notebook_executes(path, tmp_path, monkeypatch):
    if BACKEND not in backends_for(path.name):
        pytest.skip(f"{path.name} runs on {backends_for(path.name)[0]} (fast mode: {FAST_SECONDS.get(path.name, '?')} s)")
    notebook = nbformat.read(path, as_version=4)
    monkeypatch.setenv("KGEN_FAST", "1")
    monkeypatch.setenv("KERAS_BACKEND", BACKEND)
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # the notebooks' tempfile folders (runs, exports) land here
    client = NotebookClient(notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
    handlers = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        client.execute()
    finally:  # nbclient's asyncio signal handlers can leave SIGINT changed in this process (and its children)
        for signum, handler in handlers.items():
            if handler is not None:
                signal.signal(signum, handler)
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    errors = [f"{o.ename}: {o.evalue}" for o in outputs if o.output_type == "error"]
    assert not errors
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream" and o.name == "stdout")
    assert f"Keras backend: {BACKEND}" in text
    assert f"kgen: {ROOT / 'kgen'}" in text or path.name == "vae_walkthrough.ipynb"  # this checkout's kgen
    if path.name not in EXPECTED:
        pytest.fail(f"{path.name} ran; add its figures and printed facts to EXPECTED in {Path(__file__).name}")
    figures, check = EXPECTED[path.name]
    assert sum("image/png" in o.get("data", {}) for o in outputs) == figures
    check(text, tmp_path)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_notebook_is_committed_without_outputs(path):
    notebook = nbformat.read(path, as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code, f"{path.name} has no code"
    with_outputs = [i for i, cell in enumerate(notebook.cells)
                    if cell.cell_type == "code" and (cell.outputs or cell.execution_count is not None)]
    assert not with_outputs, (f"{path.name}: cells {with_outputs} have outputs; clear them "
                              "(jupyter nbconvert --clear-output --inplace, or nbformat)")
