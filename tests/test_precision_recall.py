"""Improved precision and recall (kgen.metrics.precision_recall) on point clouds with known answers."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from kgen.metrics.precision_recall import inside_manifold, knn_radii, precision_recall


def modes(n_per_mode: int, which, seed: int = 0, dim: int = 16) -> np.ndarray:
    """n_per_mode standard Gaussian points around each of the chosen centres 100 * e_m (``dim`` >= 10)
    or (100 m, 0, ...) (``dim`` < 10): modes at least 100 apart, far beyond any within-mode k-NN radius."""
    rng = np.random.default_rng(seed)
    centres = 100.0 * (np.eye(dim)[list(which)] if dim >= 10 else np.eye(dim)[[0] * len(which)] * np.c_[list(which)])
    return np.concatenate([c + rng.normal(size=(n_per_mode, dim)) for c in centres])


def test_identical_sets_score_one():
    x = modes(50, range(10))
    assert precision_recall(x, x) == {"precision": 1.0, "recall": 1.0, "precision_recall_k": 3.0}


def test_far_apart_sets_score_zero():
    real, fake = modes(50, range(5)), modes(50, range(5, 10), seed=1)
    result = precision_recall(real, fake)
    assert result["precision"] == 0.0 and result["recall"] == 0.0


def test_covering_half_the_modes_exactly():
    """Samples that are copies of the real points of 5 of 10 modes: every sample is real (precision 1),
    exactly the real points of those 5 modes are covered (recall 1/2)."""
    real = modes(40, range(10))
    fake = real[: 5 * 40]
    result = precision_recall(real, fake)
    assert result["precision"] == 1.0 and result["recall"] == 0.5


def test_covering_half_the_modes_with_fresh_samples():
    """Fresh draws from 5 of the 10 real modes, in 2-D: precision near 1 (fresh points of a mode land in
    the union of its real balls, k = 3 of 200 points a mode), recall at most 1/2 and near it. (In 16-D
    the k-NN balls of 200 points cover only ~80% of fresh draws: the metric needs many points in high
    dimensions, which is why the paper uses 50,000.)"""
    real = modes(200, range(10), seed=0, dim=2)
    fake = modes(400, range(5), seed=1, dim=2)
    result = precision_recall(real, fake)
    assert result["precision"] > 0.95
    assert 0.46 < result["recall"] <= 0.5
    # Recall of the covered half alone is near 1, of the other half exactly 0.
    assert precision_recall(real[: 5 * 200], fake)["recall"] > 0.9
    assert precision_recall(real[5 * 200 :], fake)["recall"] == 0.0


def test_radii_and_membership_match_brute_force_in_any_block_size():
    rng = np.random.default_rng(3)
    real, fake = rng.normal(size=(70, 5)), rng.normal(0.5, 1.0, size=(60, 5))
    d = cdist(real, real)
    np.testing.assert_allclose(knn_radii(real, 3), np.sort(d, axis=1)[:, 3])  # column 0 is the point itself
    brute = np.any(cdist(fake, real) <= np.sort(d, axis=1)[None, :, 3], axis=1)
    for block in (1, 100, 10**7):
        np.testing.assert_allclose(knn_radii(real, 3, block), np.sort(d, axis=1)[:, 3])
        np.testing.assert_array_equal(inside_manifold(fake, real, knn_radii(real, 3), block), brute)
    assert precision_recall(real, fake, block=50)["precision"] == pytest.approx(brute.mean())


def test_more_neighbours_never_lower_either_number():
    rng = np.random.default_rng(4)
    real, fake = rng.normal(size=(100, 4)), rng.normal(0.7, 1.3, size=(100, 4))
    results = [precision_recall(real, fake, k) for k in (1, 3, 10)]
    for small, large in zip(results, results[1:]):
        assert large["precision"] >= small["precision"] and large["recall"] >= small["recall"]


def test_bad_arguments():
    with pytest.raises(ValueError, match="feature sizes"):
        precision_recall(np.zeros((5, 3)), np.zeros((5, 4)))
    with pytest.raises(ValueError, match="k must be"):
        knn_radii(np.zeros((3, 2)), k=3)
