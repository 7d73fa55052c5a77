"""AIS estimates of an RBM's log Z (kgen.metrics.ais) against exact enumeration."""

from __future__ import annotations

import math

import numpy as np
import pytest

from kgen.metrics import ais
from kgen.models.rbm import RBM

VISIBLE, HIDDEN = 24, 10


def random_rbm(scale: float = 0.6, seed: int = 0) -> RBM:
    """A small RBM with weights large enough for a rugged, multi-modal p(v) (log Z by enumeration)."""
    rng = np.random.default_rng(seed)
    model = RBM((VISIBLE,), hidden=HIDDEN, seed=seed)
    model.W.assign(rng.normal(0.0, scale, (VISIBLE, HIDDEN)).astype("float32"))
    model.visible_bias.assign(rng.normal(-0.5, 0.5, VISIBLE).astype("float32"))
    model.hidden_bias.assign(rng.normal(0.0, 0.5, HIDDEN).astype("float32"))
    return model


def exact_samples(model: RBM, n: int, seed: int = 0) -> np.ndarray:
    """n exact draws from p(v): enumerate h (2^HIDDEN states), p(h) ∝ exp(c.h) prod_i (1 + exp(b_i + W_i.h))."""
    W, b, c = (np.asarray(model.get_weights()[i], np.float64) for i in range(3))
    states = ((np.arange(2**HIDDEN)[:, None] >> np.arange(HIDDEN)) & 1).astype(np.float64)
    log_p = states @ c + np.logaddexp(0.0, states @ W.T + b).sum(axis=1)
    p = np.exp(log_p - log_p.max())
    rng = np.random.default_rng(seed)
    h = states[rng.choice(len(states), n, p=p / p.sum())]
    return (rng.random((n, VISIBLE)) < 1.0 / (1.0 + np.exp(-(h @ W.T + b)))).astype(np.float32)


def test_schedules():
    paper = ais.paper_schedule()
    assert len(paper) == 14_501 and paper[0] == 0.0 and paper[-1] == 1.0 and np.all(np.diff(paper) > 0)
    assert np.diff(paper)[:500] == pytest.approx(1e-3) and np.diff(paper)[-1] == pytest.approx(1e-5)
    assert len(ais.linear_schedule(10)) == 11
    with pytest.raises(ValueError):
        ais.ais_log_partition(random_rbm(), betas=[0.0, 0.7], runs=2)


def test_ais_matches_exact_log_partition():
    model = random_rbm()
    exact = model.log_partition()
    data = exact_samples(model, 2000)
    estimate = ais.ais_log_partition(model, ais.linear_schedule(500), runs=200,
                                     base_bias=ais.base_rate_bias(data), seed=0)
    error = estimate["log_z"] - exact
    # Within 4 of its standard errors (the paper's +-3 sd interval contains it) and within 0.05 nat.
    assert abs(error) < 4 * estimate["log_z_se"] + 1e-3 and abs(error) < 0.05
    assert estimate["log_z_low"] - 1e-3 <= exact <= estimate["log_z_high"] + 1e-3
    assert estimate["runs"] == 200 and estimate["temperatures"] == 500 and estimate["log_weights"].shape == (200,)


def test_ais_from_a_uniform_base_is_right_too():
    model = random_rbm(seed=1)
    estimate = ais.ais_log_partition(model, ais.linear_schedule(500), runs=100, seed=3)
    assert estimate["log_z_base"] == pytest.approx((VISIBLE + HIDDEN) * math.log(2.0))
    assert abs(estimate["log_z"] - model.log_partition()) < 0.05


def test_more_temperatures_reduce_the_error():
    """With T steps the variance of log w falls roughly as 1/T (Neal 2001); so does the error of log Z."""
    model = random_rbm(scale=1.0, seed=2)
    exact = model.log_partition()
    estimates = [ais.ais_log_partition(model, ais.linear_schedule(steps), runs=100, seed=0) for steps in (10, 100, 1000)]
    spreads = [e["log_weights"].std() for e in estimates]
    errors = [abs(e["log_z"] - exact) for e in estimates]
    assert spreads[0] > 2 * spreads[1] > 4 * spreads[2]
    assert errors[0] > 4 * errors[2] and errors[2] < 0.03
    # The same seed gives the same estimate, and the block size does not change it.
    again = ais.ais_log_weights(model, ais.linear_schedule(10), np.zeros(VISIBLE), runs=100, seed=0, block=3)
    np.testing.assert_allclose(again, estimates[0]["log_weights"], rtol=1e-5)


def test_test_log_likelihood_is_minus_free_energy_minus_log_z():
    model = random_rbm()
    v = exact_samples(model, 300, seed=1)
    log_z = model.log_partition()
    np.testing.assert_allclose(ais.rbm_log_likelihood(model, v, log_z), model.exact_log_likelihood(v), rtol=1e-6)
    # Exact samples of the model score, on average, minus its entropy; a shuffled copy scores less.
    shuffled = np.random.default_rng(0).permuted(v, axis=1)
    assert ais.rbm_log_likelihood(model, shuffled, log_z).mean() < ais.rbm_log_likelihood(model, v, log_z).mean() - 1


def test_rbm_likelihood_report():
    model = random_rbm()
    x = exact_samples(model, 400, seed=2)
    report = ais.rbm_likelihood(model, x, ais.linear_schedule(300), runs=100, seed=0)
    exact_nll = -model.exact_log_likelihood(x).mean()  # x is binary: binarize leaves it as it is
    assert report["rbm_nll"] == pytest.approx(exact_nll, abs=0.05)
    assert report["rbm_nll_low"] <= report["rbm_nll"] <= report["rbm_nll_high"]
    assert report["rbm_bits_per_dim"] == pytest.approx(report["rbm_nll"] / (VISIBLE * math.log(2)))
    assert report["ais_runs"] == 100 and report["ais_temperatures"] == 300
    assert report == ais.rbm_likelihood(model, x, ais.linear_schedule(300), runs=100, seed=0)  # seeded


def test_base_rate_bias_is_smoothed_log_odds():
    data = np.zeros((100, 3))
    data[:50, 0] = 1.0
    data[:, 1] = 1.0
    bias = ais.base_rate_bias(data)
    assert bias[0] == pytest.approx(0.0)
    assert 1 / (1 + np.exp(-bias[1])) == pytest.approx(1.05 / 1.1)  # always on: finite
    assert 1 / (1 + np.exp(-bias[2])) == pytest.approx(0.05 / 1.1)
