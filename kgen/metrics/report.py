"""A generator judged by a domain classifier: FID, KID, classifier score, mode coverage.

The floor ``kgen evaluate`` reads them against is ``kgen.metrics.floor.matched_real_floor`` (real
images at the generator's sample size); ``real_floor`` (two halves of the evaluated split) is kept
for the notebooks and for comparison, not reported by ``kgen evaluate``."""

from __future__ import annotations

import numpy as np

from kgen import sampling
from kgen.metrics.generative import classifier_score, fid, kid, mode_coverage
from kgen.models import Ability, can
from kgen.models.base import DATA_BOUNDS
from kgen.outputs import batched


def rescale(x: np.ndarray, from_range: str, to_range: str) -> np.ndarray:
    """Images from one bounded data range to another ([0, 1] <-> [-1, 1]), clipped to it."""
    if from_range == to_range:
        return x
    if from_range not in DATA_BOUNDS or to_range not in DATA_BOUNDS:
        raise ValueError(f"cannot compare data scaled as {from_range!r} with a classifier trained on {to_range!r} data")
    (low, high), (to_low, to_high) = DATA_BOUNDS[from_range], DATA_BOUNDS[to_range]
    unit = np.clip((x - low) / (high - low), 0.0, 1.0)
    return (to_low + unit * (to_high - to_low)).astype(np.float32)


def classifier_outputs(classifier, x: np.ndarray, batch_size: int = 500) -> tuple[np.ndarray, np.ndarray]:
    """(penultimate features, class probabilities) of x, already in the classifier's range."""
    features = batched(lambda b: classifier.features(b), x, batch_size)
    probabilities = batched(lambda b: classifier.predict_proba(b), x, batch_size)
    return features.astype(np.float64), probabilities.astype(np.float64)


def check_compatible(generator, classifier) -> None:
    if tuple(generator.data_shape) != tuple(classifier.data_shape):
        raise ValueError(f"the classifier takes images of shape {tuple(classifier.data_shape)}, the generator "
                         f"makes {tuple(generator.data_shape)}: train a classifier on the generator's dataset")


def generated_outputs(generator, classifier, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(features, class probabilities) of n samples of ``generator`` in ``classifier``'s feature space
    (``sampling.sample_batches``, rescaled to the classifier's data range)."""
    check_compatible(generator, classifier)
    samples = sampling.sample_batches(generator, n, seed)
    return classifier_outputs(classifier, rescale(samples, generator.hparams["data_range"],
                                                  classifier.hparams["data_range"]))


def feature_quality(generator, fake_features: np.ndarray, fake_probabilities: np.ndarray, real_features: np.ndarray,
                    num_classes: int, seed: int = 0, kid_subset: int = 1000) -> dict[str, float]:
    """FID/KID between generated and real features, classifier score and mode coverage of the
    generated probabilities; conditional generators (drawn one class after another, as
    ``sampling.sample_batches`` does) add the fraction classified as the label they were drawn for."""
    n = len(fake_features)
    predicted = fake_probabilities.argmax(axis=1)
    covered, mode_kl = mode_coverage(predicted, num_classes)
    kid_mean, kid_std = kid(fake_features, real_features, subset_size=kid_subset, seed=seed)
    report = {
        "fid": fid(fake_features, real_features),
        "kid": kid_mean,
        "kid_std": kid_std,
        "classifier_score": classifier_score(fake_probabilities),
        "modes_covered": float(covered),
        "mode_kl": mode_kl,
        "samples": float(n),
    }
    if can(generator, Ability.CONDITIONAL):
        report["label_accuracy"] = float(np.mean(predicted == sampling.default_labels(generator, n)))
    return report


def sample_quality(generator, classifier, real_features: np.ndarray, n: int = 10_000, seed: int = 0,
                   kid_subset: int = 1000) -> dict[str, float]:
    """``feature_quality`` of n samples against the real images' features (``classifier_outputs``
    of the test split, computed once by the caller)."""
    fake_features, fake_probabilities = generated_outputs(generator, classifier, n, seed)
    return feature_quality(generator, fake_features, fake_probabilities, real_features, classifier.num_classes, seed,
                           kid_subset)


def real_floor(real_features: np.ndarray, real_probabilities: np.ndarray, seed: int = 0,
               kid_subset: int = 1000) -> dict[str, float]:
    """The figures between two random halves of the real test split (its ``classifier_outputs``):
    what a perfect generator would score with this many samples (FID has a positive bias that
    shrinks with n). On a small split this is several times the bias of a generator's n samples
    against the whole split: ``kgen evaluate`` reports ``matched_real_floor`` instead."""
    order = np.random.default_rng(seed).permutation(len(real_features))
    half = len(real_features) // 2
    a, b = real_features[order[:half]], real_features[order[half : 2 * half]]
    return {
        "fid_real_floor": fid(a, b),
        "kid_real_floor": kid(a, b, subset_size=kid_subset, seed=seed)[0],
        "classifier_score_real": classifier_score(real_probabilities),
    }


__all__ = ["check_compatible", "classifier_outputs", "feature_quality", "generated_outputs", "real_floor", "rescale",
           "sample_quality"]
