"""Parzen-window log-likelihood (kgen.metrics.parzen) against closed forms."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import multivariate_normal

from kgen.metrics.parzen import parzen_evaluate, parzen_log_likelihood, parzen_log_likelihoods, select_sigma


def test_one_sample_is_the_gaussian_log_density():
    rng = np.random.default_rng(0)
    mu, x = rng.normal(size=(1, 3)), rng.normal(size=(50, 3))
    for sigma in (0.2, 1.0, 3.0):
        expected = multivariate_normal(mu[0], sigma**2 * np.eye(3)).logpdf(x)
        np.testing.assert_allclose(parzen_log_likelihood(mu, x, sigma), expected, rtol=1e-10)


def test_equal_samples_are_one_gaussian_and_any_block_size_gives_the_same():
    rng = np.random.default_rng(1)
    mu, x = np.repeat(rng.normal(size=(1, 4)), 7, axis=0), rng.normal(size=(30, 4))
    np.testing.assert_allclose(parzen_log_likelihood(mu, x, 0.5), multivariate_normal(mu[0], 0.25 * np.eye(4)).logpdf(x))
    samples = rng.normal(size=(40, 4))
    full = parzen_log_likelihoods(samples, x, [0.3, 0.9])
    for block in (1, 37, 10**6):
        np.testing.assert_allclose(parzen_log_likelihoods(samples, x, [0.3, 0.9], block), full, rtol=1e-12)
    np.testing.assert_allclose(full[:, 1], parzen_log_likelihood(samples, x, 0.9))


def test_many_samples_approach_the_smoothed_density():
    """E[p_sigma(x)] over samples from N(0, I) is N(x | 0, (1 + sigma^2) I): with 20,000 samples the
    Parzen log-likelihood matches it point by point (relative density error ~1/sqrt(N sigma^2 4 pi p))."""
    rng = np.random.default_rng(2)
    samples, x = rng.normal(size=(20_000, 2)), rng.normal(size=(300, 2))
    sigma = 0.3
    smoothed = multivariate_normal(np.zeros(2), (1 + sigma**2) * np.eye(2)).logpdf(x)
    difference = parzen_log_likelihood(samples, x, sigma) - smoothed
    assert abs(difference.mean()) < 0.01 and np.abs(difference).max() < 0.15


def test_the_chosen_window_approaches_the_true_log_likelihood():
    """Samples, validation and test points from N(0, I_2): the protocol's test log-likelihood tends to
    the true one, E[log N(x | 0, I)] = -log(2 pi) - 1, from below (paired with the true log density)."""
    rng = np.random.default_rng(3)
    samples, valid, test = rng.normal(size=(10_000, 2)), rng.normal(size=(1000, 2)), rng.normal(size=(2000, 2))
    grid = np.logspace(-1.5, 0, 10)
    result = parzen_evaluate(samples, valid, test, grid)
    true = multivariate_normal(np.zeros(2), np.eye(2)).logpdf(test)
    assert abs(true.mean() - (-math.log(2 * math.pi) - 1)) < 3 * true.std() / math.sqrt(len(test))
    # E_p[log q] <= E_p[log p] for any density q (Gibbs' inequality): the gap is >= 0 in expectation;
    # paired over 2,000 test points its noise is a few thousandths of a nat.
    gap = true.mean() - result["parzen_log_likelihood"]
    assert -0.005 < gap < 0.03
    assert 0.05 < result["parzen_sigma"] < 0.5 and result["parzen_sigma_at_grid_edge"] == 0.0
    assert result["parzen_log_likelihood_se"] == pytest.approx(
        parzen_log_likelihood(samples, test, result["parzen_sigma"]).std(ddof=1) / math.sqrt(len(test)))
    assert result["parzen_samples"] == 10_000 and result["parzen_test_examples"] == 2000


def test_select_sigma_is_the_argmax_and_the_edge_is_flagged():
    rng = np.random.default_rng(4)
    samples, valid = rng.normal(size=(500, 3)), rng.normal(size=(200, 3))
    grid = [0.1, 0.3, 0.6, 1.0]
    sigma, scores = select_sigma(samples, valid, grid)
    assert sigma == grid[int(np.argmax(scores))]
    np.testing.assert_allclose(scores, parzen_log_likelihoods(samples, valid, grid).mean(axis=0))
    assert parzen_evaluate(samples, valid, valid, [5.0, 10.0])["parzen_sigma_at_grid_edge"] == 1.0


def test_bad_arguments():
    with pytest.raises(ValueError, match="dimensions"):
        parzen_log_likelihood(np.zeros((3, 2)), np.zeros((3, 4)), 1.0)
    with pytest.raises(ValueError, match="positive"):
        parzen_log_likelihood(np.zeros((3, 2)), np.zeros((3, 2)), 0.0)
