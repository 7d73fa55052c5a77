"""`kgen evaluate` and `kgen encode` as library functions, and the metrics behind them.

Reconstruction metrics are per example, averaged over pixels:
  MSE  = mean_i (x_i - x_hat_i)^2
  BCE  = -mean_i [x_i log x_hat_i + (1 - x_i) log(1 - x_hat_i)]   (data in [0, 1] only)
  PSNR = 10 log10(peak^2 / MSE), peak = width of the data range (1 for [0,1], 2 for [-1,1])
The anomaly score of an example is its reconstruction MSE.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import keras
import numpy as np
from scipy.linalg import subspace_angles

from kgen import data as kgen_data
from kgen import images
from kgen.data import check_split, dataset_arrays
from kgen.files import atomic_write
from kgen.metrics import (classifier_outputs, clustering_error, hungarian_accuracy, mmd2_gaussian, real_floor, rescale,
                          sample_quality)
from kgen.models import Ability, can
from kgen.models.base import DATA_BOUNDS
from kgen.outputs import batched, code_scatter, codes_of, pca_basis, reconstructions
from kgen.runs import Run, find_classifier, load_model

PEAK = {name: high - low for name, (low, high) in DATA_BOUNDS.items()}
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


def principal_angles(basis: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Principal angles (degrees, largest first) between span(basis) and the top-k PCA subspace of x."""
    return np.degrees(subspace_angles(basis.astype("float64"), pca_basis(x, basis.shape[1])))


def split_arrays(run: Run, split: str, limit: int | None = None, loaded=None) -> tuple[np.ndarray, np.ndarray]:
    """(x, labels) of a run's dataset split, scaled as the model was trained.

    ``loaded``: the run's dataset when the caller already has it (one load for several splits).
    """
    check_split(split)
    config = run.config()
    loaded = loaded or kgen_data.load_dataset(config["dataset"], config.get("data_dir"))
    return dataset_arrays(loaded, split, config["data_range"], limit, name=config["dataset"])


def pseudo_log_likelihood(model, x: np.ndarray) -> np.ndarray:
    """Per-example stochastic pseudo-log-likelihood of an RBM on x binarized at 0.5."""
    binary = (x.reshape(len(x), -1) > 0.5).astype("float32")
    return batched(lambda batch: model.pseudo_log_likelihood(model.flatten(batch)), binary)


def evaluate(model, run: Run, split: str = "test", scores: str | Path | None = None, seed: int = 0,
             limit: int | None = None, classifier: str | Path | None = None, n: int = 10_000) -> dict:
    """Evaluate a trained model on a split; returns (and records in metrics.json) the summary.

    Autoencoders: reconstruction figures. Classifiers: accuracy. Generators (models that
    sample but do not reconstruct, or any that samples when ``classifier`` is given): FID,
    KID, classifier score and mode coverage of ``n`` samples against the split, in the
    feature space of a kgen ``classifier`` run (default: the newest one on the same dataset
    beside ``run``), with the real-vs-real floor.
    """
    check_split(split)
    samples, reconstructs = can(model, Ability.SAMPLE), can(model, Ability.RECONSTRUCT)
    generative = samples and (classifier is not None or not reconstructs)
    if classifier is not None and not samples:
        raise ValueError(f"model '{model.model_name}' cannot sample, so there is nothing to compare with the "
                         "data; --classifier is for generators (gan, vae, ...)")
    if not (reconstructs or can(model, Ability.CLASSIFY) or can(model, Ability.CLUSTER) or generative):
        raise ValueError(f"`kgen evaluate` has no figures for model '{model.model_name}'")
    if scores is not None and not reconstructs:
        raise ValueError(f"--scores writes reconstruction errors; model '{model.model_name}' does not reconstruct")
    if n < 2:
        raise ValueError(f"--n must be >= 2, got {n}")
    config = run.config()
    loaded = kgen_data.load_dataset(config["dataset"], config.get("data_dir"))
    x, labels = split_arrays(run, split, limit, loaded)
    summary: dict = {}
    if reconstructs:
        summary.update(reconstruction_summary(model, run, split, x, labels, scores, seed, loaded))
    if can(model, Ability.CLASSIFY):
        predicted = batched(model.predict_proba, x).argmax(axis=1)
        summary["accuracy"] = float(np.mean(predicted == labels))
        summary["error_rate"] = 1.0 - summary["accuracy"]
    elif can(model, Ability.CLUSTER):
        summary.update(clustering_summary(model, run, split, x, labels, loaded))
    if can(model, Ability.CODE_PRIOR):
        summary.update(prior_summary(model, run, split, x, labels, seed))
    if generative:
        summary.update(generative_summary(model, run, x, classifier, n, seed))
    run.record(summary, "evaluation", split)
    return summary


def clustering_summary(model, run: Run, split: str, x: np.ndarray, labels: np.ndarray, loaded) -> dict:
    """Clustering error with majority labels from the training split (Makhzani et al., section 6),
    Hungarian accuracy when there are as many clusters as classes, and how many clusters are used."""
    clusters = model.num_classes
    if split == "train":
        train_x, train_labels = x, labels
    else:
        train_x, train_labels = split_arrays(run, "train", loaded=loaded)
    train_assigned = batched(model.predict_proba, train_x).argmax(axis=1)
    assigned = batched(model.predict_proba, x).argmax(axis=1)
    out = {"clustering_error": clustering_error(train_assigned, train_labels, assigned, labels, clusters),
           "clusters_used": float(len(np.unique(assigned)))}
    num_classes = int(max(labels.max(), train_labels.max())) + 1
    if clusters == num_classes:
        out["hungarian_accuracy"] = hungarian_accuracy(assigned, labels, clusters)
    return out


def prior_summary(model, run: Run, split: str, x: np.ndarray, labels: np.ndarray, seed: int,
                  n: int = 2000) -> dict:
    """How close the codes are to the prior: MMD^2 between up to n codes and as many prior draws,
    beside the same statistic between two prior draws (what equal distributions give); and the
    scatter of the codes over the prior's density, written to the run's samples folder."""
    x, labels = x[:n], labels[:n]
    codes = codes_of(model, x)
    prior = keras.ops.convert_to_numpy(model.sample_prior(len(codes), labels=labels, seed=seed))
    other = keras.ops.convert_to_numpy(model.sample_prior(len(codes), labels=labels, seed=seed + 1))
    run.samples_dir.mkdir(exist_ok=True)
    plot = images.save_png(code_scatter(model, x, labels, seed, codes=codes),
                           run.samples_dir / f"codes-vs-prior-{split}.png")
    return {"code_prior_mmd2": mmd2_gaussian(codes, prior), "prior_prior_mmd2": mmd2_gaussian(other, prior),
            "code_plot": str(plot)}


def generative_summary(model, run: Run, x: np.ndarray, classifier: str | Path | None, n: int, seed: int) -> dict:
    """Sample-quality figures of a generator against the real images x (in the model's range)."""
    classifier_run = find_classifier(run, classifier)
    judge = load_model(classifier_run)
    if not can(judge, Ability.FEATURES):
        raise ValueError(f"{classifier_run.path} has no feature layer to compare samples in")
    if classifier_run.config()["dataset"] != run.config()["dataset"]:
        print(f"[kgen] warning: the classifier was trained on {classifier_run.config()['dataset']!r}, the generator "
              f"on {run.config()['dataset']!r}", file=sys.stderr)
    print(f"[kgen] judging {n} samples with the classifier {classifier_run.path}", file=sys.stderr)
    real_features, real_probabilities = classifier_outputs(
        judge, rescale(x, model.hparams["data_range"], judge.hparams["data_range"]))
    return {**sample_quality(model, judge, real_features, n, seed),
            **real_floor(real_features, real_probabilities, seed),
            "classifier": str(classifier_run.path)}


def reconstruction_summary(model, run: Run, split: str, x: np.ndarray, labels: np.ndarray, scores, seed: int,
                           loaded) -> dict[str, float]:
    """Reconstruction error, the denoising gain, an RBM's pseudo-likelihood, a linear AE's PCA angles."""
    data_range = model.hparams.get("data_range", "unit")
    per_example = reconstruction_errors(x, reconstructions(model, x, labels), data_range)
    summary = {f"reconstruction_{name}": float(np.mean(values)) for name, values in per_example.items()}
    if can(model, Ability.DENOISE) and data_range in PEAK:
        noisy = batched(lambda b: model.corrupt(b, seed=seed), x)
        denoised = batched(model.reconstruct, noisy)
        summary["psnr_noisy"] = float(np.mean(psnr(x, noisy, PEAK[data_range])))
        summary["psnr_denoised"] = float(np.mean(psnr(x, denoised, PEAK[data_range])))
        summary["psnr_gain"] = summary["psnr_denoised"] - summary["psnr_noisy"]
    if can(model, Ability.PSEUDO_LIKELIHOOD):
        summary["pseudo_log_likelihood"] = float(np.mean(pseudo_log_likelihood(model, x)))
    if can(model, Ability.PRINCIPAL_SUBSPACE):
        train_x = x if split == "train" else split_arrays(run, "train", 20_000, loaded)[0]
        angles = principal_angles(model.decoder_basis(), train_x)
        summary["pca_max_angle_degrees"] = float(angles.max())
        summary["pca_mean_angle_degrees"] = float(angles.mean())
    if scores is not None:
        write_scores(Path(scores), labels, per_example)
    return summary


def write_scores(path: Path, labels: np.ndarray, per_example: dict[str, np.ndarray]) -> None:
    """index, label, per-example metrics and the anomaly score (reconstruction MSE) as CSV."""
    if path.suffix.lower() != ".csv":
        raise ValueError(f"--scores must be a .csv file, got {path}")
    names = list(per_example)

    def write(tmp: Path):
        with open(tmp, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["index", "label", *names, "anomaly_score"])
            for i, label in enumerate(labels):
                values = (f"{per_example[n][i]:.6g}" for n in (*names, "mse"))
                writer.writerow([i, int(label), *values])

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, write)


def encode(model, run: Run, split: str, out: str | Path, limit: int | None = None) -> tuple[Path, int]:
    """Write the split's codes and labels to an .npz (``codes``, ``labels``; VAEs add ``log_var``, models
    with a label head (the semi-supervised and clustering AAE) ``probabilities``)."""
    out = Path(out)
    if out.suffix.lower() != ".npz":
        raise ValueError(f"--out must be an .npz file, got {out}")
    if not can(model, Ability.ENCODE):
        raise ValueError(f"model '{model.model_name}' has no encoder")
    x, labels = split_arrays(run, split, limit)
    codes = batched(model.encode, x)
    arrays = {"labels": labels, "codes": codes}
    if isinstance(codes, tuple):  # VAE: (mean, log_var)
        arrays["codes"], arrays["log_var"] = codes
    if can(model, Ability.CLASSIFY) or can(model, Ability.CLUSTER):  # the AAE's label head: q(y | x) too
        arrays["probabilities"] = batched(model.predict_proba, x)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(out, lambda tmp: np.savez(tmp, **arrays))
    return out, len(labels)


__all__ = ["encode", "evaluate", "principal_angles", "psnr", "pseudo_log_likelihood", "reconstruction_errors",
           "split_arrays"]
