"""Parzen-window log-likelihood of a generator (Goodfellow et al. 2014, section 5; Makhzani et al. 2016, section 4).

A Gaussian kernel density on N generated samples mu_1..mu_N in D dimensions,

    p_sigma(x) = (1/N) sum_i N(x | mu_i, sigma^2 I),
    log p_sigma(x) = logsumexp_i(-||x - mu_i||^2 / (2 sigma^2)) - log N - (D/2) log(2 pi sigma^2),

with sigma chosen by maximum likelihood on a validation split over a grid, and the mean of
log p_sigma on the test split reported with its standard error over test examples. The protocol
of the papers: N = 10,000 samples, MNIST in [0, 1] (Goodfellow et al.: GAN 225 +- 2, Makhzani et
al.: AAE 340 +- 2 nats); the grid here is Goodfellow et al.'s code's, 10 values log-spaced from
0.1 to 1. The number depends on the data's scale (a factor s on the data subtracts D log s) and
is a poor estimate of the true likelihood in high dimensions (Theis et al. 2016, section 3.2):
compare it only across models under the same protocol.

numpy only; the distances of each block of test points to all samples are computed once and
reused for every sigma of the grid.
"""

from __future__ import annotations

import math

import numpy as np

from kgen.metrics.likelihood import mean_and_standard_error

BLOCK = 2**23  # distances per block: 64 MiB of float64
DEFAULT_SIGMAS = np.logspace(-1.0, 0.0, 10)


def _rows(x) -> np.ndarray:
    x = np.asarray(x, np.float64)
    return x.reshape(len(x), -1)


def parzen_log_likelihoods(samples: np.ndarray, x: np.ndarray, sigmas, block: int = BLOCK) -> np.ndarray:
    """log p_sigma(x) for every row of x and every sigma: (len(x), len(sigmas)) float64."""
    mu, x = _rows(samples), _rows(x)
    sigmas = np.atleast_1d(np.asarray(sigmas, np.float64))
    if mu.shape[1] != x.shape[1]:
        raise ValueError(f"samples have {mu.shape[1]} dimensions, the data {x.shape[1]}")
    if np.any(sigmas <= 0):
        raise ValueError("sigma must be positive")
    n, dims = mu.shape
    mu_norms = np.einsum("ij,ij->i", mu, mu)
    constant = -math.log(n) - 0.5 * dims * np.log(2.0 * math.pi * sigmas**2)  # (G,)
    out = np.empty((len(x), len(sigmas)))
    step = max(1, block // n)
    for start in range(0, len(x), step):
        rows = x[start : start + step]
        d2 = rows @ mu.T
        d2 *= -2.0
        d2 += np.einsum("ij,ij->i", rows, rows)[:, None] + mu_norms[None, :]
        np.maximum(d2, 0.0, out=d2)
        # logsumexp_i(-d2_i / (2 s^2)) = -m / (2 s^2) + log sum_i exp(-(d2_i - m) / (2 s^2)), m = min_i d2_i:
        # the shift is the same for every sigma, so each sigma costs one scale, exp and sum in place.
        nearest = d2.min(axis=1)
        d2 -= nearest[:, None]
        scaled = np.empty_like(d2)
        for g, sigma in enumerate(sigmas):
            np.multiply(d2, -0.5 / sigma**2, out=scaled)
            np.exp(scaled, out=scaled)
            out[start : start + step, g] = np.log(scaled.sum(axis=1)) - nearest * (0.5 / sigma**2)
    return out + constant[None, :]


def parzen_log_likelihood(samples: np.ndarray, x: np.ndarray, sigma: float, block: int = BLOCK) -> np.ndarray:
    """log p_sigma(x) per row of x, for one sigma."""
    return parzen_log_likelihoods(samples, x, [sigma], block)[:, 0]


def select_sigma(samples: np.ndarray, validation: np.ndarray, sigmas=DEFAULT_SIGMAS,
                 block: int = BLOCK) -> tuple[float, np.ndarray]:
    """(the sigma of the grid with the highest mean validation log-likelihood, the mean for each sigma)."""
    sigmas = np.atleast_1d(np.asarray(sigmas, np.float64))
    scores = parzen_log_likelihoods(samples, validation, sigmas, block).mean(axis=0)
    return float(sigmas[int(np.argmax(scores))]), scores


def parzen_evaluate(samples: np.ndarray, validation: np.ndarray, test: np.ndarray, sigmas=DEFAULT_SIGMAS,
                    block: int = BLOCK) -> dict[str, float]:
    """Goodfellow et al.'s protocol: sigma by maximum likelihood on ``validation``, then the mean
    Parzen log-likelihood of ``test`` (nats per example) and its standard error.

    Returns ``parzen_log_likelihood``, ``parzen_log_likelihood_se``, ``parzen_sigma``,
    ``parzen_sigma_at_grid_edge`` (1.0 when the best sigma is the grid's smallest or largest: widen
    the grid), ``parzen_samples``, ``parzen_validation_examples``, ``parzen_test_examples``.
    """
    sigmas = np.sort(np.atleast_1d(np.asarray(sigmas, np.float64)))
    sigma, _ = select_sigma(samples, validation, sigmas, block)
    mean, se = mean_and_standard_error(parzen_log_likelihood(samples, test, sigma, block))
    return {
        "parzen_log_likelihood": mean,
        "parzen_log_likelihood_se": se,
        "parzen_sigma": sigma,
        "parzen_sigma_at_grid_edge": float(len(sigmas) > 1 and sigma in (sigmas[0], sigmas[-1])),
        "parzen_samples": float(len(samples)),
        "parzen_validation_examples": float(len(validation)),
        "parzen_test_examples": float(len(test)),
    }


__all__ = ["DEFAULT_SIGMAS", "parzen_evaluate", "parzen_log_likelihood", "parzen_log_likelihoods", "select_sigma"]
