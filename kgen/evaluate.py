"""`kgen evaluate` and `kgen encode` as library functions, and the metrics behind them.

Reconstruction metrics are per example, averaged over pixels:
  MSE  = mean_i (x_i - x_hat_i)^2
  BCE  = -mean_i [x_i log x_hat_i + (1 - x_i) log(1 - x_hat_i)]   (data in [0, 1] only)
  PSNR = 10 log10(peak^2 / MSE), peak = width of the data range (1 for [0,1], 2 for [-1,1])
The anomaly score of an example is its reconstruction MSE.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import keras
import numpy as np
from scipy.linalg import subspace_angles

from kgen import data as kgen_data
from kgen import images
from kgen.runs import Run, RunError, atomic_write

PEAK = {"unit": 1.0, "symmetric": 2.0}
SPLITS = ("train", "test")


def psnr(clean: np.ndarray, other: np.ndarray, peak: float) -> np.ndarray:
    """Peak signal-to-noise ratio in dB, per example."""
    mse = np.mean(np.square(clean - other).reshape(len(clean), -1), axis=1)
    return 10.0 * np.log10(peak**2 / np.maximum(mse, 1e-12))


def reconstruction_errors(x: np.ndarray, x_hat: np.ndarray, data_range: str) -> dict[str, np.ndarray]:
    """Per-example MSE, BCE (for [0,1] data) and PSNR (for bounded data)."""
    flat, flat_hat = x.reshape(len(x), -1).astype("float64"), x_hat.reshape(len(x), -1).astype("float64")
    out = {"mse": np.mean(np.square(flat - flat_hat), axis=1)}
    if data_range == "unit":
        p = np.clip(flat_hat, 1e-7, 1 - 1e-7)
        out["bce"] = -np.mean(flat * np.log(p) + (1 - flat) * np.log(1 - p), axis=1)
    if data_range in PEAK:
        out["psnr"] = psnr(flat, flat_hat, PEAK[data_range])
    return out


def pca_basis(x: np.ndarray, k: int) -> np.ndarray:
    """Top-k principal directions of x (rows = examples) as columns of a (features x k) matrix."""
    flat = x.reshape(len(x), -1).astype("float64")
    _, _, vt = np.linalg.svd(flat - flat.mean(axis=0), full_matrices=False)
    return vt[:k].T


def principal_angles(basis: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Principal angles (degrees, largest first) between span(basis) and the top-k PCA subspace of x."""
    return np.degrees(subspace_angles(basis.astype("float64"), pca_basis(x, basis.shape[1])))


def project_2d(codes: np.ndarray) -> np.ndarray:
    """Codes as 2-D points: themselves when 2-D, else their first two principal components."""
    codes = codes.reshape(len(codes), -1).astype("float64")
    if codes.shape[1] <= 2:
        return np.pad(codes, ((0, 0), (0, 2 - codes.shape[1])))
    return (codes - codes.mean(axis=0)) @ pca_basis(codes, 2)


def codes_of(model, x):
    """The model's code for x: ``encode`` output, the mean for a VAE."""
    codes = model.encode(x)
    if isinstance(codes, (tuple, list)):
        codes = codes[0]
    return keras.ops.convert_to_numpy(codes)


def split_arrays(run: Run, split: str, limit: int | None = None, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """(x, labels) of a run's dataset split, scaled as the model was trained."""
    if split not in SPLITS:
        raise ValueError(f"--split must be one of {', '.join(SPLITS)}, got {split!r}")
    config = run.config()
    loaded = kgen_data.load_dataset(config["dataset"], config.get("data_dir"))
    source = loaded.train if split == "train" else loaded.test
    if source is None:
        raise kgen_data.DataError(f"dataset {config['dataset']!r} has no {split} split")
    if limit is not None:
        source = source.take(limit)
    xs, ys = [], []
    for x, y in kgen_data.pipeline(source, batch_size, config["data_range"], loaded.dtype, shuffle=False):
        xs.append(x.numpy())
        ys.append(y.numpy())
    if not xs:
        raise kgen_data.DataError(f"the {split} split of {config['dataset']!r} is empty")
    return np.concatenate(xs), np.concatenate(ys)


def batched(fn, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    return np.concatenate([keras.ops.convert_to_numpy(fn(x[i : i + batch_size])) for i in range(0, len(x), batch_size)])


def evaluate(model, run: Run, split: str = "test", scores: str | Path | None = None, seed: int = 0,
             limit: int | None = None) -> dict[str, float]:
    """Evaluate a trained autoencoder-family model on a split; returns (and records) the summary."""
    if not hasattr(model, "reconstruct"):
        raise ValueError(f"model '{model.model_name}' does not reconstruct; `kgen evaluate` for it is not available")
    data_range = model.hparams.get("data_range", "unit")
    x, labels = split_arrays(run, split, limit)
    per_example = reconstruction_errors(x, batched(model.reconstruct, x), data_range)
    summary = {f"reconstruction_{name}": float(np.mean(values)) for name, values in per_example.items()}
    if hasattr(model, "corrupt") and data_range in PEAK:
        noisy = batched(lambda b: model.corrupt(b, seed=seed), x)
        denoised = batched(model.reconstruct, noisy)
        summary["psnr_noisy"] = float(np.mean(psnr(x, noisy, PEAK[data_range])))
        summary["psnr_denoised"] = float(np.mean(psnr(x, denoised, PEAK[data_range])))
        summary["psnr_gain"] = summary["psnr_denoised"] - summary["psnr_noisy"]
    if hasattr(model, "decoder_basis"):
        train_x = x if split == "train" else split_arrays(run, "train", limit=20_000)[0]
        angles = principal_angles(model.decoder_basis(), train_x)
        summary["pca_max_angle_degrees"] = float(angles.max())
        summary["pca_mean_angle_degrees"] = float(angles.mean())
    if scores is not None:
        write_scores(Path(scores), labels, per_example)
    run.record_evaluation(split, summary)
    return summary


def write_scores(path: Path, labels: np.ndarray, per_example: dict[str, np.ndarray]) -> None:
    """index, label, per-example metrics and the anomaly score (reconstruction MSE) as CSV."""
    if path.suffix.lower() != ".csv":
        raise ValueError(f"--scores must be a .csv file, got {path}")
    names = list(per_example)

    def write(tmp: Path):
        with open(tmp, "w", newline="") as f:
            write_rows(csv.writer(f))

    def write_rows(writer):
        writer.writerow(["index", "label", *names, "anomaly_score"])
        for i, label in enumerate(labels):
            writer.writerow([i, int(label), *(f"{per_example[n][i]:.6g}" for n in names), f"{per_example['mse'][i]:.6g}"])

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, write)


def encode(model, run: Run, split: str, out: str | Path, limit: int | None = None) -> tuple[Path, int]:
    """Write the split's codes and labels to an .npz (``codes``, ``labels``; VAEs add ``log_var``)."""
    out = Path(out)
    if out.suffix.lower() != ".npz":
        raise ValueError(f"--out must be an .npz file, got {out}")
    if not hasattr(model, "encode"):
        raise ValueError(f"model '{model.model_name}' has no encoder")
    x, labels = split_arrays(run, split, limit)
    arrays = {"labels": labels}
    outputs = [model.encode(x[i : i + 256]) for i in range(0, len(x), 256)]
    if isinstance(outputs[0], (tuple, list)):  # VAE: (mean, log_var)
        arrays["codes"] = np.concatenate([keras.ops.convert_to_numpy(o[0]) for o in outputs])
        arrays["log_var"] = np.concatenate([keras.ops.convert_to_numpy(o[1]) for o in outputs])
    else:
        arrays["codes"] = np.concatenate([keras.ops.convert_to_numpy(o) for o in outputs])
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(out, lambda tmp: np.savez(tmp, **arrays))
    return out, len(labels)


def code_scatter(model, x: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """RGB image of the 2-D projection of x's codes, coloured by label."""
    codes = np.concatenate([codes_of(model, x[i : i + 256]) for i in range(0, len(x), 256)])
    latent = codes.shape[1] if codes.ndim == 2 else math.prod(codes.shape[1:])
    title = "codes" if latent <= 2 else f"codes: first two principal components of {latent}-D"
    return images.scatter(project_2d(codes), labels, title=title)


__all__ = ["RunError", "code_scatter", "encode", "evaluate", "principal_angles", "psnr", "reconstruction_errors"]
