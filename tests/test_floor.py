"""The real-vs-real FID/KID floor at the generator's sample size (kgen.metrics.floor)."""

from __future__ import annotations

import numpy as np
import pytest

from kgen.metrics import fid, kid, real_floor
from kgen.metrics.floor import matched_real_floor

DIM = 8


def features(n: int, seed: int) -> np.ndarray:
    """Features of 'real images': one fixed correlated Gaussian."""
    mixing = np.random.default_rng(100).normal(size=(DIM, DIM)) / np.sqrt(DIM)
    return np.random.default_rng(seed).normal(size=(n, DIM)) @ mixing + 1.0


def test_matched_floor_is_what_a_perfect_generator_scores():
    """A perfect generator draws from the data distribution: its FID against a 200-image split with
    n = 2,000 samples averages what the matched floor averages; the two-halves floor (100 vs 100) is
    several times higher, the inflation the matched floor removes."""
    train = features(20_000, seed=1)
    perfect, matched, halves = [], [], []
    for seed in range(20):
        split = features(200, seed=1000 + seed)
        perfect.append(fid(features(2000, seed=2000 + seed), split))
        matched.append(matched_real_floor(train, split, 2000, seed=seed, kid_subset=100)["fid_real_floor"])
        halves.append(real_floor(split, np.full((200, 2), 0.5), seed=seed, kid_subset=100)["fid_real_floor"])
    assert np.mean(matched) == pytest.approx(np.mean(perfect), rel=0.15)
    assert np.mean(halves) > 3 * np.mean(matched)


def test_matched_floor_draws_n_reference_examples_with_its_seed():
    train, split = features(500, seed=1), features(100, seed=2)
    result = matched_real_floor(train, split, 300, seed=7, kid_subset=50)
    chosen = train[np.random.default_rng(7).permutation(500)[:300]]
    assert result["fid_real_floor"] == pytest.approx(fid(chosen, split))
    assert (result["kid_real_floor"], result["kid_real_floor_std"]) == pytest.approx(kid(chosen, split, subset_size=50, seed=7))
    assert result["real_floor_samples"] == 300
    assert matched_real_floor(train, split, 10_000)["real_floor_samples"] == 500  # all there are
    assert result == matched_real_floor(train, split, 300, seed=7, kid_subset=50)


def test_matched_floor_refuses_the_evaluated_images_as_reference():
    split = features(100, seed=3)
    with pytest.raises(ValueError, match="must not be the evaluated"):
        matched_real_floor(split, split, 50)
    with pytest.raises(ValueError, match="must not be the evaluated"):
        matched_real_floor(split[:60], split, 50)
