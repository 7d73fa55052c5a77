"""--check: the exports loaded in a fresh process without kgen or Keras (``checker.py``), every
signature's outputs compared with the Keras model's at every batch size (``compare``)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from kgen.export.common import CHECK_BATCHES, TOLERANCE, ExportFailed
from kgen.export.processes import run_child
from kgen.export.signatures import Signature

# The checker's program: the text of checker.py (a program, never imported), run with python -I -c
# (kgen is not importable there).
CHECKER = Path(__file__).with_name("checker.py").read_text()


def run_checker(jobs: list[dict], empty: Path) -> list[dict]:
    """Load each export with ``python -I`` (no PYTHONPATH, user site or cwd on sys.path) in the
    ``empty`` folder, kgen, cli and keras blocked; run every signature at every CHECK_BATCHES size.
    ``jobs``: [{"path", "inputs" (npz), "outputs" (npz to write), "signatures"}]; returns their
    signature defs."""
    args = [{**job, "path": str(Path(job["path"]).resolve()), "batches": list(CHECK_BATCHES)} for job in jobs]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "KERAS"))}
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    proc = run_child(CHECKER, [json.dumps(args)], env, isolated=True, cwd=empty)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("[")]
    if proc.returncode != 0 or not lines:
        last = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise ExportFailed(f"the export does not load and run in a plain TensorFlow process: {last}")
    return json.loads(lines[-1])


def _png_pixels(blobs) -> np.ndarray:
    from io import BytesIO

    from PIL import Image

    return np.stack([np.asarray(Image.open(BytesIO(bytes(b)))) for b in blobs])


def compare(plan: list[Signature], defs: dict, outputs: dict[str, np.ndarray],
            references: dict[str, dict[str, np.ndarray]]) -> dict[str, dict[str, float]]:
    """Max |SavedModel - Keras| per signature and output over CHECK_BATCHES (divided by the output's
    largest magnitude where that exceeds 1); raises ExportFailed beyond TOLERANCE, on a signature
    whose names, shapes or dtypes are not the planned ones, or when an input row (a ``sample``
    seed) gives another output at another batch size."""
    dtypes = {"float32": "DT_FLOAT", "int64": "DT_INT64", "string": "DT_STRING"}
    problems, diffs = [], {}
    for signature in plan:
        for alias in [signature.name] + (["serving_default"] if signature is plan[0] else []):
            found = defs.get(alias, {})
            for side in ("inputs", "outputs"):
                planned = {k: {"dtype": dtypes[d], "shape": [-1 if n is None else n for n in shape]}
                           for k, (shape, d) in getattr(signature, side).items()}
                actual = {k: {"dtype": v["dtype"], "shape": v["shape"]} for k, v in found.get(side, {}).items()}
                if planned != actual:
                    problems.append(f"signature '{alias}' {side} are {actual or 'missing'}, expected {planned}")
        reference, worst = references[signature.name], {}
        for batch in CHECK_BATCHES:
            for key in signature.outputs:
                got = outputs.get(f"{signature.name}/{batch}/{key}")
                if got is None or len(got) != batch:
                    problems.append(f"{signature.name}: no {key} of {batch} rows for a batch of {batch}")
                    continue
                if key == "png_bytes":  # decoded PNG pixels against the rounded reference images
                    want = np.round(np.clip(reference[signature.image][:batch], 0, 1) * 255)
                    pixels = _png_pixels(got[: len(want)]).reshape(want.shape).astype(np.float64)
                    worst[key] = max(worst.get(key, 0.0), float(np.abs(pixels - want).max()))
                    if worst[key] > 1:  # 1: a value at x.5 may round either way
                        problems.append(f"{signature.name}: png_bytes pixels differ by {worst[key]:.0f} levels")
                    continue
                if key == "label":  # an argmax: right when it points at a maximal reference probability
                    probabilities = reference["probabilities"][:batch]
                    diff = float((probabilities.max(-1) - probabilities[np.arange(batch), got]).max())
                else:  # sample: SAMPLE_REFERENCES rows of reference
                    want = reference[key][:batch]
                    first = outputs[f"{signature.name}/{CHECK_BATCHES[0]}/{key}"]
                    scale = max(1.0, float(np.abs(reference[key]).max()))
                    diff = max(float(np.abs(got[: len(want)] - want).max()),
                               float(np.abs(got[: len(first)] - first).max())) / scale
                worst[key] = max(worst.get(key, 0.0), diff)
                if worst[key] > TOLERANCE:
                    problems.append(f"{signature.name}: {key} differs from Keras by {worst[key]:.3g} "
                                    f"(tolerance {TOLERANCE:g})")
        diffs[signature.name] = worst
    if problems:
        raise ExportFailed("check failed: " + "; ".join(dict.fromkeys(problems)))
    return diffs
