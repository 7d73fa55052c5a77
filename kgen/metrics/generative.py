"""How good are a generator's samples? Statistics in a domain classifier's feature space.

- FID (Heusel et al. 2017): the Frechet distance between Gaussians fitted to the two
  feature sets, ||mu_1 - mu_2||^2 + Tr(S_1 + S_2 - 2 (S_1 S_2)^(1/2)).
- KID (Binkowski et al. 2018): the unbiased estimate of the squared MMD with the cubic
  polynomial kernel k(x, y) = (x.y / d + 1)^3, averaged over random subsets. Unlike
  FID it has no bias from the sample size: its mean is 0 for equal distributions.
- Classifier score (the Inception-score formula of Salimans et al. 2016 on a domain
  classifier's softmax): exp(E_x KL(p(y|x) || p(y))), between 1 (every sample the same
  class, or no confident prediction) and the number of classes (confident and uniform).
- Mode coverage: the classes that receive at least a tenth of their uniform share of
  the samples' predicted labels, and KL(predicted-label histogram || uniform).

Everything here is numpy/scipy on features; the classifier is any model with
``features(x)`` and ``predict_proba(x)`` (kgen's ``classifier``).
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy import linalg


def gaussian_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and (unbiased) covariance of the rows."""
    features = np.asarray(features, dtype=np.float64).reshape(len(features), -1)
    return features.mean(axis=0), np.cov(features, rowvar=False)


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Frechet distance between N(mu1, sigma1) and N(mu2, sigma2)."""
    diff = mu1 - mu2
    with warnings.catch_warnings():
        # ReLU features with dead units give singular covariances; sqrtm still returns the root.
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        covmean = linalg.sqrtm(sigma1 @ sigma2)
        if not np.all(np.isfinite(covmean)):
            # A product sqrtm cannot take: regularise as pytorch-fid does.
            offset = np.eye(len(sigma1)) * 1e-6
            covmean = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    covmean = np.real(covmean)  # tiny imaginary parts from round-off
    return float(max(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean), 0.0))


def fid(features_a: np.ndarray, features_b: np.ndarray) -> float:
    """FID between two feature sets (rows = examples)."""
    return frechet_distance(*gaussian_statistics(features_a), *gaussian_statistics(features_b))


def polynomial_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """k(x, y) = (x.y / d + 1)^3 for every pair of rows."""
    k = x @ y.T
    k /= x.shape[1]
    k += 1.0
    return k * k * k


def mmd2_unbiased(x: np.ndarray, y: np.ndarray, kernel=polynomial_kernel) -> float:
    """Unbiased MMD^2 (Gretton et al. 2012, eq. 3); the cubic polynomial kernel unless ``kernel`` says otherwise."""
    m, n = len(x), len(y)
    k_xx, k_yy, k_xy = kernel(x, x), kernel(y, y), kernel(x, y)
    xx = (k_xx.sum() - np.trace(k_xx)) / (m * (m - 1))
    yy = (k_yy.sum() - np.trace(k_yy)) / (n * (n - 1))
    return float(xx + yy - 2.0 * k_xy.mean())


def kid(features_a: np.ndarray, features_b: np.ndarray, subsets: int = 100, subset_size: int = 1000,
        seed: int = 0) -> tuple[float, float]:
    """KID: mean and standard deviation of the unbiased MMD^2 over random subsets."""
    a = np.asarray(features_a, dtype=np.float64).reshape(len(features_a), -1)
    b = np.asarray(features_b, dtype=np.float64).reshape(len(features_b), -1)
    size = min(subset_size, len(a), len(b))
    if size < 2:
        raise ValueError("KID needs at least 2 examples in each set")
    rng = np.random.default_rng(seed)
    values = [mmd2_unbiased(a[rng.choice(len(a), size, replace=False)], b[rng.choice(len(b), size, replace=False)])
              for _ in range(subsets)]
    return float(np.mean(values)), float(np.std(values))


def classifier_score(probabilities: np.ndarray, eps: float = 1e-12) -> float:
    """exp(E_x KL(p(y|x) || p(y))) with p(y) the mean prediction (the Inception-score formula)."""
    p = np.asarray(probabilities, dtype=np.float64)
    marginal = p.mean(axis=0, keepdims=True)
    kl = np.sum(p * (np.log(p + eps) - np.log(marginal + eps)), axis=1)
    return float(np.exp(kl.mean()))


def mode_coverage(predicted: np.ndarray, num_classes: int, share: float = 0.1) -> tuple[int, float]:
    """(classes holding at least ``share`` of their uniform share of the samples,
    KL(predicted-class histogram || uniform) in nats)."""
    counts = np.bincount(np.asarray(predicted, dtype=np.int64), minlength=num_classes)[:num_classes]
    q = counts / max(counts.sum(), 1)
    covered = int(np.sum(counts >= share * counts.sum() / num_classes))
    nonzero = q > 0
    return covered, float(np.sum(q[nonzero] * np.log(q[nonzero] * num_classes)))


__all__ = ["classifier_score", "fid", "frechet_distance", "gaussian_statistics", "kid", "mmd2_unbiased",
           "mode_coverage", "polynomial_kernel"]
