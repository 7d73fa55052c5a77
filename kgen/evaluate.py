"""`kgen evaluate` and `kgen encode` as library functions, and the metrics behind them.

Each family is judged by its field's figures (docs/evaluation.md lists them all):
- reconstruction (every autoencoder), per example, averaged over pixels:
    MSE  = mean_i (x_i - x_hat_i)^2
    BCE  = -mean_i [x_i log x_hat_i + (1 - x_i) log(1 - x_hat_i)]   (data in [0, 1] only)
    PSNR = 10 log10(peak^2 / MSE), peak = width of the data range (1 for [0,1], 2 for [-1,1])
  the anomaly score of an example is its reconstruction MSE;
- VAEs: the test NLL, -ELBO and the IWAE bound with K importance samples (``kgen.metrics.likelihood``);
- RBMs: the test NLL with log Z by annealed importance sampling (``kgen.metrics.ais``);
- generators: FID/KID, classifier score, mode coverage, precision and recall, in a kgen classifier's
  feature space, read against the real-vs-real floor at the generator's sample size
  (``kgen.metrics.report``, ``precision_recall``, ``floor``); InfoGAN: its categorical code's accuracy;
- AAEs: error rates, code-vs-prior MMD and the Parzen-window log-likelihood of samples (``parzen``).

Every evaluation is stored as a record of its data (name or path, split, number of examples, sha256
of the evaluated arrays) and its metrics; ``kgen.runs.Run.record_evaluation`` keeps one record per
data set and split.
"""

from __future__ import annotations

import csv
import math
import sys
import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import keras
import numpy as np
from scipy.linalg import subspace_angles

import kgen
from kgen import data as kgen_data
from kgen import images, sampling
from kgen.data import DataError, Dataset, check_split, dataset_arrays
from kgen.files import FileError, atomic_write, sha256_of_arrays
from kgen.metrics import (
    classifier_outputs,
    classifier_score,
    clustering_error,
    feature_quality,
    generated_code_accuracy,
    generated_outputs,
    hungarian_accuracy,
    matched_real_floor,
    mmd2_gaussian,
    paper_schedule,
    parzen_evaluate,
    precision_recall,
    q_code_accuracy,
    rbm_likelihood,
    rescale,
    vae_likelihood,
)
from kgen.metrics.ais import PAPER_STEPS
from kgen.metrics.report import check_compatible
from kgen.models import Ability, can
from kgen.models.base import DATA_BOUNDS
from kgen.outputs import batched, code_scatter, codes_of, pca_basis, reconstructions
from kgen.runs import Run, dataset_identity, find_classifier, load_model

PEAK = {name: high - low for name, (low, high) in DATA_BOUNDS.items()}
SPLITS = ("train", "test")
DEFAULT_IMPORTANCE_SAMPLES = 200  # K of the IWAE bound; the papers use 5,000 (Burda et al. 2016)
DEFAULT_AIS_RUNS = 100  # M, as Salakhutdinov & Murray (2008)
PARZEN_VALIDATION = 1000  # examples of the other split that choose the Parzen window
PRECISION_RECALL_K = 3  # k of the k-NN balls (Kynkaanniemi et al. 2019)


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


# -- the data an evaluation judges ---------------------------------------------------------------
@dataclass
class EvaluationData:
    """The examples an evaluation judges, scaled as the model was trained, and where they come from.

    ``dataset``: the data's name or absolute path (``kgen.runs.dataset_identity``); ``loaded``: the
    ``kgen.data.Dataset`` it was read from. The split not evaluated (``other_split``: real images the
    evaluated ones do not contain) is read on first use, once.
    """

    dataset: str
    loaded: Dataset
    split: str
    data_range: str
    x: np.ndarray
    labels: np.ndarray
    limit: int | None = None
    _other: tuple[np.ndarray, np.ndarray] | None = field(default=None, repr=False)

    @property
    def labelled(self) -> bool:
        """Whether the examples carry labels (unlabelled data sets give -1)."""
        return len(self.labels) > 0 and int(np.min(self.labels)) >= 0

    def other_split(self) -> tuple[np.ndarray, np.ndarray]:
        """(x, labels) of the other split: the training split when the test split is evaluated, and vice versa."""
        if self._other is None:
            other = "train" if self.split == "test" else "test"
            self._other = dataset_arrays(self.loaded, other, self.data_range, name=self.dataset)
        return self._other

    def training(self) -> tuple[np.ndarray, np.ndarray]:
        """(x, labels) of the training split (the evaluated examples when they are the training split)."""
        return (self.x, self.labels) if self.split == "train" else self.other_split()

    @cached_property
    def sha256(self) -> str:
        """The content hash of the evaluated arrays: the scaled images, then the labels (``sha256_of_arrays``)."""
        return sha256_of_arrays(self.x, self.labels)

    def describe(self) -> dict:
        """The record of what was evaluated: name or path, where it was read, split, number of examples,
        example shape, scaling, --limit and the content hash."""
        return {"dataset": self.dataset, "source": self.loaded.source, "split": self.split,
                "examples": len(self.x), "shape": list(self.x.shape[1:]), "data_range": self.data_range,
                "limit": self.limit, "sha256": self.sha256}


def evaluation_data(run: Run, model, split: str = "test", limit: int | None = None, dataset: str | None = None,
                    data_dir: str | None = None) -> EvaluationData:
    """The ``split`` of ``dataset`` (default: the run's own data) scaled as ``model`` was trained;
    DataError when it cannot be read or its examples are not the shape the model takes."""
    check_split(split)
    config = run.config()
    name = config["dataset"] if dataset is None else dataset
    loaded = kgen_data.load_dataset(name, data_dir or config.get("data_dir"), verbose=False)
    x, labels = dataset_arrays(loaded, split, config["data_range"], limit, name=name)
    if tuple(x.shape[1:]) != tuple(model.data_shape):
        raise DataError(f"{name}: examples of shape {tuple(x.shape[1:])}, but the model takes "
                        f"{tuple(model.data_shape)} (it was trained on {config['dataset']})")
    return EvaluationData(dataset_identity(name), loaded, split, config["data_range"], x, labels, limit)


# -- the driver ----------------------------------------------------------------------------------
def evaluate(model, run: Run, split: str = "test", scores: str | Path | None = None, seed: int = 0,
             limit: int | None = None, classifier: str | Path | None = None, n: int = 10_000, *,
             dataset: str | None = None, data_dir: str | None = None,
             importance_samples: int = DEFAULT_IMPORTANCE_SAMPLES, ais_temperatures: int = PAPER_STEPS,
             ais_runs: int = DEFAULT_AIS_RUNS) -> dict:
    """Evaluate a trained model on a split of its data (or of ``dataset``); returns the record it adds
    to metrics.json (``Run.record_evaluation``): ``{"data": ..., "metrics": ..., "seed", "epoch",
    "backend", "kgen_version", "evaluated_at"}``.

    Autoencoders: reconstruction figures, and with ``classifier`` its accuracy on the reconstructions of
    labelled data (``reconstruction_judge_accuracy``, beside ``judge_accuracy`` on the images); VAEs add
    the likelihood (-ELBO and the IWAE bound with ``importance_samples`` = K; 0 skips it); RBMs the AIS
    likelihood (``ais_temperatures`` steps in the paper's spacing, ``ais_runs`` chains). Classifiers:
    accuracy. Generators (models that sample but do not reconstruct, or any that samples when
    ``classifier`` is given): FID, KID, classifier score, mode coverage, precision/recall of ``n``
    samples against the split, in the feature space of a kgen ``classifier`` run (default: the newest
    one on the run's dataset beside ``run``), with the real-vs-real floor of ``n`` images of the other
    split. AAEs: error rates, code-vs-prior MMD and the Parzen log-likelihood of ``n`` samples; InfoGAN:
    the categorical code's accuracy.

    Everything that can be refused is checked before anything is computed or written.
    """
    check_split(split)
    samples, reconstructs = can(model, Ability.SAMPLE), can(model, Ability.RECONSTRUCT)
    generative = samples and (classifier is not None or not reconstructs)
    judged_reconstructions = reconstructs and classifier is not None
    if classifier is not None and not (samples or reconstructs):
        raise ValueError(f"model '{model.model_name}' cannot sample or reconstruct, so there is nothing to judge; "
                         "--classifier is for generators (gan, vae, ...) and autoencoders")
    if not (reconstructs or can(model, Ability.CLASSIFY) or can(model, Ability.CLUSTER) or generative):
        raise ValueError(f"`kgen evaluate` has no figures for model '{model.model_name}'")
    if scores is not None and not reconstructs:
        raise ValueError(f"--scores writes reconstruction errors; model '{model.model_name}' does not reconstruct")
    if n < 2:
        raise ValueError(f"--n must be >= 2, got {n}")
    if importance_samples < 0:
        raise ValueError(f"--importance-samples must be >= 0 (0: no likelihood), got {importance_samples}")
    if ais_runs < 2:
        raise ValueError(f"--ais-runs must be >= 2 (the standard error needs two), got {ais_runs}")
    schedule = paper_schedule(ais_temperatures) if can(model, Ability.ENERGY) else None  # refuses T < 3
    judge_run, judge = judge_for(model, run, classifier) if generative or judged_reconstructions else (None, None)
    data = evaluation_data(run, model, split, limit, dataset, data_dir)
    if judged_reconstructions and not samples and not data.labelled:
        raise ValueError(f"{data.dataset}: the {split} split has no labels, so the classifier cannot judge "
                         "the reconstructions")

    summary: dict = {}
    if reconstructs:
        summary.update(reconstruction_summary(model, data, scores, seed))
    if judged_reconstructions and data.labelled:
        summary.update(reconstruction_judgement(model, judge, data))
    if can(model, Ability.VARIATIONAL) and importance_samples:
        summary.update(vae_likelihood(model, data.x, importance_samples, seed))
    if can(model, Ability.ENERGY):
        summary.update(rbm_likelihood(model, data.x, schedule, ais_runs, seed, base_data=data.training()[0]))
    if data.labelled and can(model, Ability.CLASSIFY):
        predicted = batched(model.predict_proba, data.x).argmax(axis=1)
        summary["accuracy"] = float(np.mean(predicted == data.labels))
        summary["error_rate"] = 1.0 - summary["accuracy"]
    elif data.labelled and can(model, Ability.CLUSTER):
        summary.update(clustering_summary(model, data))
    if data.labelled and can(model, Ability.CATEGORICAL_CODE):
        summary.update(q_code_accuracy(model, data.x, data.labels))
    if can(model, Ability.CODE_PRIOR):
        summary.update(prior_summary(model, run, data, seed))
        if samples:
            summary.update(parzen_summary(model, data, n, seed))
    if generative:
        summary.update(generative_summary(model, judge_run, judge, data, n, seed))
    record = {"data": data.describe(),
              "metrics": {k: v if isinstance(v, str) else float(v) for k, v in summary.items()},
              "seed": seed, "epoch": completed_epoch(run), "backend": keras.backend.backend(),
              "kgen_version": kgen.__version__, "evaluated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    run.record_evaluation(record)
    return record


def completed_epoch(run: Run) -> int | None:
    """The epoch whose weights model.keras holds (None when latest.json cannot tell)."""
    try:
        return run.committed_epoch()
    except FileError:
        return None


def judge_for(model, run: Run, classifier: str | Path | None):
    """(classifier run, its model) whose feature space judges ``model``'s samples; refused when it has
    no feature layer or takes images of another shape."""
    classifier_run = find_classifier(run, classifier)
    judge = load_model(classifier_run)
    if not can(judge, Ability.FEATURES):
        raise ValueError(f"{classifier_run.path} has no feature layer to compare samples in")
    check_compatible(model, judge)
    if classifier_run.config()["dataset"] != run.config()["dataset"]:
        print(f"[kgen] warning: the classifier was trained on {classifier_run.config()['dataset']!r}, the generator "
              f"on {run.config()['dataset']!r}", file=sys.stderr)
    return classifier_run, judge


def clustering_summary(model, data: EvaluationData) -> dict:
    """Clustering error with majority labels from the training split (Makhzani et al., section 6),
    Hungarian accuracy when there are as many clusters as classes, and how many clusters are used."""
    clusters = model.num_classes
    train_x, train_labels = data.training()
    train_assigned = batched(model.predict_proba, train_x).argmax(axis=1)
    assigned = batched(model.predict_proba, data.x).argmax(axis=1)
    out = {"clustering_error": clustering_error(train_assigned, train_labels, assigned, data.labels, clusters),
           "clusters_used": float(len(np.unique(assigned)))}
    num_classes = int(max(data.labels.max(), train_labels.max())) + 1
    if clusters == num_classes:
        out["hungarian_accuracy"] = hungarian_accuracy(assigned, data.labels, clusters)
    return out


def prior_summary(model, run: Run, data: EvaluationData, seed: int, n: int = 2000) -> dict:
    """How close the codes are to the prior: MMD^2 between up to n codes and as many prior draws,
    beside the same statistic between two prior draws (what equal distributions give); and the
    scatter of the codes over the prior's density, written to the run's samples folder under a name
    that carries the data's hash (another data set's plot is never overwritten)."""
    x, labels = data.x[:n], data.labels[:n]
    codes = codes_of(model, x)
    prior = keras.ops.convert_to_numpy(model.sample_prior(len(codes), labels=labels, seed=seed))
    other = keras.ops.convert_to_numpy(model.sample_prior(len(codes), labels=labels, seed=seed + 1))
    run.samples_dir.mkdir(exist_ok=True)
    plot = images.save_png(code_scatter(model, x, labels, seed, codes=codes),
                           run.samples_dir / f"codes-vs-prior-{data.split}-{data.sha256[:12]}.png")
    return {"code_prior_mmd2": mmd2_gaussian(codes, prior), "prior_prior_mmd2": mmd2_gaussian(other, prior),
            "code_plot": str(plot)}


def unit_scale(x: np.ndarray, data_range: str) -> np.ndarray:
    """Bounded data in [0, 1] (the scale the Parzen figures of the papers use); other data as they are."""
    return rescale(x, data_range, "unit") if data_range in DATA_BOUNDS else x


def parzen_summary(model, data: EvaluationData, n: int, seed: int) -> dict[str, float]:
    """The Parzen-window log-likelihood of the evaluated examples under n samples (Goodfellow et al.
    2014, section 5; Makhzani et al. 2015, section 4 and table 1), in [0, 1] pixel units. The window
    is chosen on ``PARZEN_VALIDATION`` random examples of the other split, at most half of it (kgen
    keeps no validation split apart while training: with the test split evaluated they are training
    examples), never on the examples it scores.

    Beside it, what real images score under the same protocol (``parzen_real_*``): up to n other
    examples of the other split, never the validation ones, as the kernels. The estimate grows with
    the number of kernels, so when fewer real images than n are left, the model's first that many
    samples are scored too (``parzen_log_likelihood_same_n``)."""
    generated = unit_scale(sampling.sample_batches(model, n, seed), data.data_range)
    reference = unit_scale(data.other_split()[0], data.data_range)
    order = np.random.default_rng(seed).permutation(len(reference))
    held = min(PARZEN_VALIDATION, len(reference) // 2)  # half at most: the rest are the real kernels
    validation, real = reference[order[:held]], reference[order[held:][:n]]
    x = unit_scale(data.x, data.data_range)
    out = parzen_evaluate(generated, validation, x)
    if len(real) >= 2:
        real_out = parzen_evaluate(real, validation, x)
        out.update({"parzen_real_log_likelihood": real_out["parzen_log_likelihood"],
                    "parzen_real_log_likelihood_se": real_out["parzen_log_likelihood_se"],
                    "parzen_real_sigma": real_out["parzen_sigma"], "parzen_real_samples": float(len(real))})
        if len(real) < n:
            out["parzen_log_likelihood_same_n"] = parzen_evaluate(
                generated[: len(real)], validation, x)["parzen_log_likelihood"]
    return out


def generative_summary(model, judge_run: Run, judge, data: EvaluationData, n: int, seed: int) -> dict:
    """Sample-quality figures of a generator against the evaluated examples, in ``judge``'s feature space.

    - ``feature_quality``: FID, KID, classifier score, mode coverage (label accuracy for conditional models);
    - precision and recall (Kynkaanniemi et al. 2019) of equally many generated and real features;
    - the floor (``matched_real_floor``): FID/KID of n real images of the other split against the
      evaluated ones, what a perfect generator scores at this sample size;
    - ``classifier_score_real``: the classifier score of the evaluated images;
    - InfoGAN: the accuracy of its categorical code on generated images, as ``judge`` classifies them.
    """
    to_judge = lambda x: rescale(x, model.hparams["data_range"], judge.hparams["data_range"])
    print(f"[kgen] judging {n} samples with the classifier {judge_run.path}", file=sys.stderr)
    real_features, real_probabilities = classifier_outputs(judge, to_judge(data.x))
    fake_features, fake_probabilities = generated_outputs(model, judge, n, seed)
    reference = data.other_split()[0]
    chosen = reference[np.random.default_rng(seed).permutation(len(reference))[:n]]
    reference_features, _ = classifier_outputs(judge, to_judge(chosen))
    report = {**feature_quality(model, fake_features, fake_probabilities, real_features, judge.num_classes, seed),
              **equal_size_precision_recall(real_features, fake_features, seed),
              **matched_real_floor(reference_features, real_features, n, seed),
              "classifier_score_real": classifier_score(real_probabilities),
              "classifier": str(judge_run.path)}
    if can(model, Ability.CATEGORICAL_CODE):
        categories = model.code_sizes[1]
        report.update(generated_code_accuracy(model, judge, per_code=max(1, math.ceil(n / categories)), seed=seed))
    return report


def equal_size_precision_recall(real_features: np.ndarray, fake_features: np.ndarray, seed: int) -> dict[str, float]:
    """``precision_recall`` with k = 3 on as many real as generated features (the larger set
    subsampled with ``default_rng(seed)``): both numbers grow with the set sizes, and the paper
    compares equal sets. Adds ``precision_recall_examples``, the size of each set."""
    size = min(len(real_features), len(fake_features))
    if size <= PRECISION_RECALL_K:
        raise ValueError(f"precision and recall need more than {PRECISION_RECALL_K} examples a side, got {size}")
    rng = np.random.default_rng(seed)
    real = real_features[rng.permutation(len(real_features))[:size]]
    fake = fake_features[rng.permutation(len(fake_features))[:size]]
    return {**precision_recall(real, fake, PRECISION_RECALL_K), "precision_recall_examples": float(size)}


def reconstruction_summary(model, data: EvaluationData, scores, seed: int) -> dict[str, float]:
    """Reconstruction error, the denoising gain, an RBM's pseudo-likelihood, a linear AE's PCA angles."""
    data_range = model.hparams.get("data_range", "unit")
    x = data.x
    per_example = reconstruction_errors(x, reconstructions(model, x, data.labels), data_range)
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
        angles = principal_angles(model.decoder_basis(), data.training()[0][:20_000])
        summary["pca_max_angle_degrees"] = float(angles.max())
        summary["pca_mean_angle_degrees"] = float(angles.mean())
    if scores is not None:
        write_scores(Path(scores), data.labels, per_example)
    return summary


def reconstruction_judgement(model, judge, data: EvaluationData) -> dict[str, float]:
    """How recognisable the reconstructions are: the judge's accuracy on the reconstructions of the
    labelled split, beside its accuracy on the images themselves (what a perfect autoencoder scores)."""
    to_judge = lambda x: rescale(x, model.hparams.get("data_range", "unit"), judge.hparams["data_range"])
    rebuilt = reconstructions(model, data.x, data.labels)
    accuracy = lambda x: float(np.mean(batched(judge.predict_proba, to_judge(x)).argmax(axis=1) == data.labels))
    return {"reconstruction_judge_accuracy": accuracy(rebuilt), "judge_accuracy": accuracy(data.x)}


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


__all__ = [
    "DEFAULT_AIS_RUNS",
    "DEFAULT_IMPORTANCE_SAMPLES",
    "EvaluationData",
    "encode",
    "evaluate",
    "evaluation_data",
    "principal_angles",
    "pseudo_log_likelihood",
    "psnr",
    "reconstruction_errors",
    "split_arrays",
]
