"""The VAE likelihood estimators (kgen.metrics.likelihood) against closed forms.

The reference model is kgen's own VAE with one affine map each way (arch "shallow"), a
Gaussian decoder and unbounded data: x = W z + b + sigma * e, z ~ N(0, I), so

    p(x) = N(x | b, W W^T + sigma^2 I),
    p(z | x) = N(S W^T (x - b) / sigma^2, S),  S = (I + W^T W / sigma^2)^-1,

diagonal when W's columns are orthogonal. An encoder set to that posterior is exact: every
importance weight equals p(x). Any other diagonal Gaussian q has
ELBO = log p(x) - KL(q || p(z|x)), also in closed form.
"""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest
from scipy.stats import multivariate_normal

from conftest import np_
from kgen.metrics import likelihood
from kgen.metrics.compiled import compiled
from kgen.models.vae import VAE

D, L, SIGMA = 6, 2, 0.5


def dense_layer(network):
    return [layer for layer in network.layers if layer.weights][-1]


def linear_gaussian_vae(mean_scale: float = 1.0, log_var_shift: float = 0.0, seed: int = 0):
    """(model, log p(x) function, posterior (mean, var) function); q = the exact posterior with its
    mean map scaled by ``mean_scale`` and log-variance shifted by ``log_var_shift`` (1, 0: exact)."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(D, L)))
    W = q * np.array([2.0, 1.2])  # orthogonal columns: W^T W = diag(4, 1.44)
    b = rng.normal(size=D)
    post_var = SIGMA**2 / (SIGMA**2 + np.sum(W**2, axis=0))  # diag of S
    gain = W * post_var / SIGMA**2  # mean = (x - b) @ gain
    model = VAE((D,), latent_dim=L, arch="shallow", decoder="gaussian", data_range="real", seed=seed)
    kernel = np.concatenate([mean_scale * gain, np.zeros((D, L))], axis=1)
    bias = np.concatenate([-mean_scale * b @ gain, np.log(post_var) + log_var_shift])
    dense_layer(model.encoder).set_weights([kernel.astype("float32"), bias.astype("float32")])
    dense_layer(model.decoder).set_weights([W.T.astype("float32"), b.astype("float32")])
    model.log_sigma.assign(math.log(SIGMA))
    marginal = multivariate_normal(b, W @ W.T + SIGMA**2 * np.eye(D))

    def posterior(x):
        return (x - b) @ gain, np.broadcast_to(post_var, (len(x), L))

    return model, marginal.logpdf, posterior, marginal


def kl_diagonal(m1, v1, m2, v2):
    """KL(N(m1, diag v1) || N(m2, diag v2)) per row."""
    return 0.5 * np.sum(np.log(v2 / v1) + (v1 + (m1 - m2) ** 2) / v2 - 1.0, axis=1)


def test_exact_posterior_makes_every_bound_equal_log_p_x():
    model, log_p, _, marginal = linear_gaussian_vae()
    x = marginal.rvs(20, random_state=1).astype("float32")
    eps = np.random.default_rng(0).standard_normal((20, 7, L)).astype("float32")
    log_w = np_(likelihood.log_importance_weights(model, x, eps))
    # Zero variance: log p(x, z) - log q(z | x) = log p(x) for every z (float32 round-off only).
    np.testing.assert_allclose(log_w, np.repeat(log_p(x)[:, None], 7, axis=1), atol=2e-4)
    for k in (1, 10):
        values = likelihood.importance_sampling(model, x, k=k, seed=3)
        np.testing.assert_allclose(values["log_likelihood"], log_p(x), atol=2e-4)
        np.testing.assert_allclose(values["elbo"], log_p(x), atol=2e-4)
        np.testing.assert_allclose(values["effective_sample_size"], k, rtol=1e-3)


@pytest.mark.parametrize("mutant", ["no_log_q", "log_q_sign", "prior_sign", "no_prior"])
def test_the_exact_posterior_check_catches_a_wrong_term(monkeypatch, mutant):
    """The zero-variance check above (tolerance 2e-4) fails, by far, for a missing or sign-flipped term of log w."""
    model, log_p, _, marginal = linear_gaussian_vae()
    x = marginal.rvs(20, random_state=1).astype("float32")
    real_q, real_prior = likelihood.log_normal_diag, likelihood.log_standard_normal
    patches = {"no_log_q": ("log_normal_diag", lambda z, m, v: 0.0 * real_q(z, m, v)),
               "log_q_sign": ("log_normal_diag", lambda z, m, v: -real_q(z, m, v)),
               "prior_sign": ("log_standard_normal", lambda z: -real_prior(z)),
               "no_prior": ("log_standard_normal", lambda z: 0.0 * real_prior(z))}
    monkeypatch.setattr(likelihood, *patches[mutant])
    values = likelihood.importance_sampling(model, x, k=10, seed=3)
    assert np.max(np.abs(values["log_likelihood"] - log_p(x))) > 0.02
    assert np.max(np.abs(values["elbo"] - log_p(x))) > 0.02


def approximate_posterior_case(n: int = 200):
    model, log_p, posterior, marginal = linear_gaussian_vae(mean_scale=0.6, log_var_shift=0.8)
    x = marginal.rvs(n, random_state=2).astype("float32")
    mean, log_var = (np_(t).astype(np.float64) for t in model.encode(x))
    true_mean, true_var = posterior(x.astype(np.float64))
    kl = kl_diagonal(mean, np.exp(log_var), true_mean, true_var)
    return model, x, log_p(x), kl


def test_elbo_is_log_p_x_minus_kl_to_the_posterior():
    model, x, log_p, kl = approximate_posterior_case(50)
    k = 4000
    values = likelihood.importance_sampling(model, x, k=k, seed=0)
    # ELBO = log p(x) - KL(q || p(z|x)) exactly; the estimate is a mean of k log-weights: allow 5 of its
    # standard errors (std(log w) measured on a fresh draw, / sqrt(k)).
    eps = np.random.default_rng(9).standard_normal((len(x), 500, L)).astype("float32")
    std = np_(likelihood.log_importance_weights(model, x, eps)).std(axis=1)
    assert np.all(kl > 0.05)
    assert np.all(np.abs(values["elbo"] - (log_p - kl)) < 5 * std / math.sqrt(k) + 1e-4)


def test_iwae_bound_tightens_with_k_and_never_passes_log_p_x():
    model, x, log_p, kl = approximate_posterior_case(1000)
    estimates = {k: likelihood.importance_sampling(model, x, k=k, seed=5)["log_likelihood"] for k in (1, 10, 100, 1000)}

    def mean_and_se(values):
        return values.mean(), values.std(ddof=1) / math.sqrt(len(values))

    for k, estimate in estimates.items():
        # E[log p(x) - L_K] >= 0 (Burda et al., Theorem 1). One realisation of log-mean-exp may pass
        # log p(x) (mean w is unbiased for p(x)), but the mean over 1,000 examples stays below it up
        # to 3 standard errors.
        gap, se = mean_and_se(log_p - estimate)
        assert gap > -3 * se, k
    # K = 1 is the ELBO: the mean gap is the mean KL(q || p(z|x)), up to Monte-Carlo error.
    gap_1, se_1 = mean_and_se(log_p - estimates[1])
    assert kl.mean() > 1.0 and abs(gap_1 - kl.mean()) < 4 * se_1
    # The gap shrinks with K: paired differences (example i draws the same first samples for every K).
    for wide, narrow in ((1, 10), (10, 100), (100, 1000)):
        gain, se = mean_and_se(estimates[narrow] - estimates[wide])
        assert gain > 2 * se, (wide, narrow)
    assert np.mean(log_p - estimates[1000]) < 0.02 * gap_1


def bernoulli_vae(seed: int = 0):
    keras.utils.set_random_seed(seed)  # the same weights whichever tests ran before in this process
    model = VAE((3, 3, 1), latent_dim=2, hidden=16, seed=seed)
    decoder = dense_layer(model.decoder)
    kernel, bias = decoder.get_weights()
    decoder.set_weights([kernel * 4.0, bias])  # a decoder that depends strongly on z
    return model


def test_iwae_of_a_bernoulli_vae_approaches_log_p_x_by_quadrature():
    """log p(x) = log int p(x|z) N(z; 0, I) dz on a 2-D grid (the integrand is smooth) vs L_5000."""
    model = bernoulli_vae()
    x = likelihood.binarize(np.random.default_rng(0).random((4, 3, 3, 1)), seed=0)
    grid = np.linspace(-7.0, 7.0, 281)
    z = np.stack(np.meshgrid(grid, grid), axis=-1).reshape(-1, L).astype("float32")
    log_prior = -0.5 * np.sum(z.astype(np.float64) ** 2, axis=1) - math.log(2 * math.pi)
    log_area = 2 * math.log(grid[1] - grid[0])
    exact = []
    log_likelihood = compiled(model, likelihood.decoder_log_likelihood)
    for row in x:
        log_px_z = log_likelihood(np.repeat(row[None], len(z), 0), z)
        terms = log_px_z + log_prior + log_area
        exact.append(np.logaddexp.reduce(terms))
    k = 5000
    values = likelihood.importance_sampling(model, x, k=k, seed=0)
    assert np.all(values["elbo"] < np.asarray(exact) - 0.1)  # this q is far from the posterior
    # The estimate's standard error by the delta method: sd(w) / (mean(w) sqrt(K)), with
    # var(w) / mean(w)^2 = K / ESS - 1 from the effective sample size. 4 of them, and 0.1 nat at most.
    se = np.sqrt((k / values["effective_sample_size"] - 1.0) / k)
    error = np.abs(values["log_likelihood"] - np.asarray(exact))
    assert np.all(error < 4 * se + 1e-3) and np.all(error < 0.1)


def test_the_estimate_is_seeded_and_independent_of_batching():
    model = bernoulli_vae()
    x = likelihood.binarize(np.random.default_rng(1).random((10, 3, 3, 1)), seed=1)
    a = likelihood.importance_sampling(model, x, k=50, seed=4)
    b = likelihood.importance_sampling(model, x, k=50, seed=4, batch_size=3, chunk=7)
    tail = likelihood.importance_sampling(model, x[6:], k=50, seed=4, first_index=6)
    other = likelihood.importance_sampling(model, x, k=50, seed=5)
    for name in a:
        np.testing.assert_allclose(a[name], b[name], rtol=1e-5)
        np.testing.assert_allclose(a[name][6:], tail[name], rtol=1e-5)
    assert not np.allclose(a["log_likelihood"], other["log_likelihood"])
    assert np.all(a["log_likelihood"] >= a["elbo"])  # Jensen, per realisation: log mean w >= mean log w


def test_vae_likelihood_reports_nats_and_bits_per_dim_on_binarized_data():
    model = bernoulli_vae()
    x = np.random.default_rng(2).random((12, 3, 3, 1)).astype("float32")
    report = likelihood.vae_likelihood(model, x, k=20, seed=7)
    again = likelihood.vae_likelihood(model, x, k=20, seed=7)
    assert report == again
    per_example = likelihood.importance_sampling(model, likelihood.binarize(x, 7), k=20, seed=7)
    assert report["iwae_nll"] == pytest.approx(-per_example["log_likelihood"].mean())
    assert report["iwae_nll_se"] == pytest.approx(per_example["log_likelihood"].std(ddof=1) / math.sqrt(12))
    assert report["iwae_bits_per_dim"] == pytest.approx(report["iwae_nll"] / (9 * math.log(2)))
    assert report["negative_elbo"] >= report["iwae_nll"]
    assert report["importance_samples"] == 20 and report["likelihood_examples"] == 12
    assert "binarized" in report["likelihood_data"] and "default_rng(7)" in report["likelihood_data"]


def test_binarize_is_bernoulli_of_the_grey_level():
    x = np.full((200, 50), 0.3, np.float32)
    bits = likelihood.binarize(x, seed=0)
    assert set(np.unique(bits)) <= {0.0, 1.0}
    assert bits.mean() == pytest.approx(0.3, abs=0.01)
    np.testing.assert_array_equal(likelihood.binarize(x[:10], seed=0), bits[:10])


@pytest.mark.parametrize("data_range, low, width", [("unit", 0.0, 1.0), ("symmetric", -1.0, 2.0)])
def test_dequantization_fills_each_8_bit_bin_with_the_jacobian(data_range, low, width):
    levels = np.random.default_rng(0).integers(0, 256, (30, 4, 4, 1))
    x = levels / 255.0 if data_range == "unit" else levels / 127.5 - 1.0
    y, log_jacobian = likelihood.dequantize(x.astype("float32"), data_range, seed=1)
    t = (y.astype(np.float64) - low) * 256.0 / width  # back on the 0..256 scale: in [k, k + 1)
    assert np.all(t >= levels - 1e-4) and np.all(t < levels + 1 + 1e-4)
    assert log_jacobian == pytest.approx(16 * math.log(width / 256.0))
    # A model uniform over the data range has log p_y = -D log(width): exactly 8 bits per dimension.
    nats = -(-16 * math.log(width) + log_jacobian)
    assert nats / (16 * math.log(2)) == pytest.approx(8.0)


def test_gaussian_decoder_likelihood_is_the_discrete_8_bit_bound():
    model = VAE((3, 3, 1), latent_dim=2, hidden=16, decoder="gaussian", seed=0)
    x = (np.random.default_rng(3).integers(0, 256, (8, 3, 3, 1)) / 255.0).astype("float32")
    report = likelihood.vae_likelihood(model, x, k=30, seed=2)
    y, correction = likelihood.dequantize(x, "unit", seed=2)
    per_example = likelihood.importance_sampling(model, y, k=30, seed=2)["log_likelihood"]
    assert correction == pytest.approx(-9 * math.log(256.0))
    assert report["iwae_nll"] == pytest.approx(-(per_example + correction).mean(), rel=1e-6)
    assert "dequantized" in report["likelihood_data"]
