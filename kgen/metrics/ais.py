"""Log-likelihood of an RBM: the partition function by annealed importance sampling.

p(v) = exp(-F(v)) / Z with F the free energy (kgen.models.rbm); Z sums over all 2^D visible
vectors, so it is estimated, by annealed importance sampling (Neal 2001) as Salakhutdinov &
Murray (2008, section 3.2 and 4.2) do for RBMs:

- Base distribution p_0: an RBM with zero weights and visible biases b_A, i.e. independent
  pixels, Bernoulli(sigmoid(b_A)); b_A = the training data's smoothed log-odds ("base rate",
  ``base_rate_bias``; the paper's choice) or 0 (uniform). Z_0 = 2^H prod_i (1 + exp(b_A,i)).
- Intermediate distributions for 0 = beta_0 < beta_1 < ... < beta_T = 1 (their eq. 12-13):

      f_k(v) = exp((1 - beta_k) b_A.v + beta_k b.v) prod_j (1 + exp(beta_k (c_j + v.W_j))),

  f_0 = 2^H exp(b_A.v) and f_T = exp(-F(v)). Each is left invariant by one Gibbs sweep with
  p(h_j = 1 | v) = sigmoid(beta_k (c_j + v.W_j)), p(v_i = 1 | h) = sigmoid((1 - beta_k) b_A,i + beta_k (b_i + W_i.h)).
- One AIS run: v_1 ~ p_0, then for k = 1..T: log w += log f_k(v_k) - log f_{k-1}(v_k), v_{k+1} ~ T_k(v_k).
  E[w] = Z / Z_0 (Neal 2001, section 2), so with M runs

      log Z_hat = log Z_0 + log (1/M) sum_m w_m,

  and the paper's interval log(Z_hat +- 3 sd), sd = std(w) / sqrt(M). Z_hat is unbiased, log
  Z_hat is biased *low* in expectation (Jensen): AIS tends to under-estimate log Z, i.e. to
  over-estimate the test log-likelihood, more so with too few temperatures.

The test log-likelihood is mean_n(-F(v_n)) - log Z_hat (nats per example; bits/dim = / (D ln 2)).
The annealing runs in keras.ops, blocks of steps as one compiled loop (``ops.fori_loop``), with
the uniform draws from numpy (the same seed gives the same estimate on every backend); log w is
accumulated with Kahan summation in float32 (thousands of small increments).
"""

from __future__ import annotations

import math

import numpy as np
from keras import ops

from kgen.metrics.compiled import compiled
from kgen.metrics.likelihood import binarize, mean_and_standard_error

# -- schedules and the base distribution -----------------------------------------------------------
PAPER_STEPS = 14_500  # Salakhutdinov & Murray's number of annealing steps (section 4.2)


def paper_schedule(steps: int = PAPER_STEPS) -> np.ndarray:
    """Salakhutdinov & Murray's schedule (section 4.2): beta spaced 1e-3 on [0, 0.5), 1e-4 on
    [0.5, 0.9), 1e-5 on [0.9, 1] -- 14,500 steps, 14,501 values from 0 to 1.

    Another number of ``steps`` keeps the paper's shape: the same three pieces, each with its share of
    the steps (500, 4,000 and 10,000 of 14,500, at least one each), so most of the annealing stays
    near beta = 1, where the distributions change fastest. ``steps + 1`` values from 0 to 1."""
    if steps < 3:
        raise ValueError(f"the paper's schedule needs at least 3 steps (one per piece), got {steps}")
    first = max(1, round(steps * 500 / PAPER_STEPS))
    second = max(1, round(steps * 4000 / PAPER_STEPS))
    third = steps - first - second
    return np.concatenate([np.linspace(0.0, 0.5, first, endpoint=False), np.linspace(0.5, 0.9, second, endpoint=False),
                           np.linspace(0.9, 1.0, third + 1)])


def linear_schedule(steps: int) -> np.ndarray:
    """``steps`` equal steps from beta = 0 to 1 (steps + 1 values)."""
    if steps < 1:
        raise ValueError(f"AIS needs at least one step, got {steps}")
    return np.linspace(0.0, 1.0, steps + 1)


def base_rate_bias(data: np.ndarray, pseudo_count: float = 0.05) -> np.ndarray:
    """Visible biases of the base-rate model: the log-odds of each pixel's mean over binary data,
    smoothed, p = (sum v + a N) / (N + 2 a N), a = ``pseudo_count`` (Salakhutdinov's rbm_ais code adds
    a N to the ones only, which gives an infinite bias to a pixel that is always on)."""
    data = np.asarray(data, np.float64).reshape(len(data), -1)
    n = len(data)
    p = (data.sum(axis=0) + pseudo_count * n) / (n + 2 * pseudo_count * n)
    return np.log(p) - np.log1p(-p)


def _check_schedule(betas) -> np.ndarray:
    betas = np.asarray(betas, np.float64)
    if betas.ndim != 1 or len(betas) < 2 or betas[0] != 0.0 or betas[-1] != 1.0 or np.any(np.diff(betas) <= 0):
        raise ValueError("the AIS schedule must increase strictly from beta = 0 to beta = 1")
    return betas


# -- the annealing, in keras.ops -------------------------------------------------------------------
def ais_steps(model, v, log_w, compensation, betas, base_bias, noise_h, noise_v):
    """S annealing steps of M runs at once: for k = 1..S, log w += log f_k(v) - log f_{k-1}(v), then one
    Gibbs sweep at beta_k (h ~ p_k(h | v), v ~ p_k(v | h)).

    ``v``: (M, D) states; ``log_w``, ``compensation``: (M,) Kahan sum of the increments and its
    rounding error; ``betas``: (S + 1,), beta_0..beta_S of this block; ``base_bias``: (D,);
    ``noise_h`` (S, M, H), ``noise_v`` (S, M, D): the U[0, 1) draws of the sweeps (u < p is a
    Bernoulli(p) draw). Returns the updated (v, log_w, compensation).
    """
    W = ops.convert_to_tensor(model.W)
    b = ops.convert_to_tensor(model.visible_bias)
    c = ops.convert_to_tensor(model.hidden_bias)
    betas = ops.cast(betas, "float32")
    bias_gap = b - base_bias

    def step(k, carry):
        v, log_w, compensation = carry
        previous, beta = ops.take(betas, k), ops.take(betas, k + 1)
        pre = ops.matmul(v, W) + c  # c + v.W, shared by both f's and by p(h | v)
        increment = (beta - previous) * ops.matmul(v, bias_gap) + ops.sum(
            ops.softplus(beta * pre) - ops.softplus(previous * pre), axis=-1)
        # Kahan summation of log_w + increment, the rounding error carried in ``compensation``.
        y = increment - compensation
        total = log_w + y
        compensation = (total - log_w) - y
        h = ops.cast(ops.take(noise_h, k, axis=0) < ops.sigmoid(beta * pre), "float32")
        visible = (1.0 - beta) * base_bias + beta * (b + ops.matmul(h, ops.transpose(W)))
        v = ops.cast(ops.take(noise_v, k, axis=0) < ops.sigmoid(visible), "float32")
        return v, total, compensation

    return ops.fori_loop(0, ops.shape(noise_h)[0], step, (v, log_w, compensation))


def ais_log_weights(model, betas: np.ndarray, base_bias: np.ndarray, runs: int, seed: int = 0,
                    block: int | None = None) -> np.ndarray:
    """log w of ``runs`` AIS runs over the schedule ``betas`` (T + 1 values, 0 to 1) from the base
    distribution with visible biases ``base_bias``; (M,) float64.

    The uniform draws come from ``np.random.default_rng(seed)``, step by step (v_1, then for each step
    h's and v's), so the estimate depends on the seed only, not on the backend or the block size. The
    steps run ``block`` at a time (default: about 8M draws per block) in one compiled keras.ops loop;
    the last block is padded with steps at beta = 1, whose increments are exactly 0.
    """
    betas = _check_schedule(betas)
    visible, hidden = model.visible, model.hparams["hidden"]
    base_bias = np.asarray(base_bias, np.float32).reshape(-1)
    steps = len(betas) - 1
    block = max(1, min(steps, block or 2**23 // (runs * (visible + hidden))))
    rng = np.random.default_rng(seed)
    v = (rng.random((runs, visible), dtype=np.float32) < 1.0 / (1.0 + np.exp(-base_bias))).astype(np.float32)
    log_w = np.zeros(runs, np.float32)
    compensation = np.zeros(runs, np.float32)
    run = compiled(model, ais_steps)
    padded = np.concatenate([betas, np.ones(-steps % block)]).astype(np.float32)
    for start in range(0, steps, block):
        size = min(block, steps - start)
        noise_h = np.zeros((block, runs, hidden), np.float32)
        noise_v = np.zeros((block, runs, visible), np.float32)
        for k in range(size):
            noise_h[k] = rng.random((runs, hidden), dtype=np.float32)
            noise_v[k] = rng.random((runs, visible), dtype=np.float32)
        v, log_w, compensation = run(v, log_w, compensation, padded[start : start + block + 1], base_bias,
                                     noise_h, noise_v)
    return np.asarray(log_w, np.float64) - np.asarray(compensation, np.float64)


def log_mean_exp_with_error(log_w: np.ndarray) -> tuple[float, float]:
    """(log mean w, sd(mean w) / mean w) of log-weights, computed stably: the second is the
    relative standard error std(w) / (sqrt(M) mean w), the delta-method standard error of log mean w."""
    log_w = np.asarray(log_w, np.float64)
    top = log_w.max()
    w = np.exp(log_w - top)
    mean = w.mean()
    relative = float(w.std(ddof=1) / (math.sqrt(len(w)) * mean)) if len(w) > 1 else float("inf")
    return float(top + math.log(mean)), relative


def ais_log_partition(model, betas: np.ndarray | None = None, runs: int = 100, base_bias: np.ndarray | None = None,
                      seed: int = 0) -> dict:
    """log Z of a kgen RBM by AIS (Salakhutdinov & Murray 2008, section 3.2).

    ``betas``: the schedule (default ``paper_schedule()``, 14,500 steps; ``linear_schedule(T)``);
    ``runs``: M, independent AIS runs; ``base_bias``: visible biases of the base distribution
    (``base_rate_bias(training data)``, the paper's choice; default 0, uniform). Returns
    ``log_z``, ``log_z_se`` (delta-method standard error of log Z_hat), ``log_z_low`` /
    ``log_z_high`` (log(Z_hat -+ 3 sd(Z_hat)) as in the paper; -inf when Z_hat - 3 sd <= 0),
    ``log_z_base``, ``runs``, ``temperatures`` (T, the number of steps) and ``log_weights`` (M,).
    """
    betas = _check_schedule(paper_schedule() if betas is None else betas)
    visible, hidden = model.visible, model.hparams["hidden"]
    base_bias = np.zeros(visible) if base_bias is None else np.asarray(base_bias, np.float64).reshape(-1)
    if base_bias.shape != (visible,):
        raise ValueError(f"base_bias needs {visible} values, got {base_bias.shape}")
    log_w = ais_log_weights(model, betas, base_bias, runs, seed)
    log_z_base = float(np.logaddexp(0.0, base_bias).sum() + hidden * math.log(2.0))
    log_ratio, relative = log_mean_exp_with_error(log_w)
    log_z = log_z_base + log_ratio
    return {
        "log_z": log_z,
        "log_z_se": relative,
        "log_z_low": log_z + math.log(1.0 - 3.0 * relative) if 3.0 * relative < 1.0 else -math.inf,
        "log_z_high": log_z + math.log1p(3.0 * relative),
        "log_z_base": log_z_base,
        "runs": runs,
        "temperatures": len(betas) - 1,
        "log_weights": log_w,
    }


def rbm_log_likelihood(model, v: np.ndarray, log_z: float, batch_size: int = 1000) -> np.ndarray:
    """log p(v) = -F(v) - log Z per example (binary v), float64."""
    v = np.asarray(v, np.float32).reshape(len(v), -1)
    free = [ops.convert_to_numpy(model.free_energy(ops.convert_to_tensor(v[i : i + batch_size])))
            for i in range(0, len(v), batch_size)]
    return -np.concatenate(free).astype(np.float64) - log_z


def rbm_likelihood(model, x: np.ndarray, betas: np.ndarray | None = None, runs: int = 100, seed: int = 0,
                   base_data: np.ndarray | None = None) -> dict:
    """Test log-likelihood of an RBM, Salakhutdinov & Murray's protocol: log Z by AIS, then
    mean(-F(v)) - log Z_hat over the binarized test images.

    ``x``: images in [0, 1], binarized with ``binarize(x, seed)`` (the RBM trains on Bernoulli(x));
    ``base_data``: images whose base rate starts the annealing (the training split; default x);
    ``betas``/``runs``: as in ``ais_log_partition``. Returns (nats per example; ``_se`` = standard
    error over examples, which does not include the error of log Z, given by ``rbm_log_z_low/high``):
    ``rbm_nll``, ``rbm_nll_se``, ``rbm_bits_per_dim``, ``rbm_nll_low``/``rbm_nll_high`` (the NLL
    with log Z at the ends of its 3-sd interval), ``rbm_log_z``, ``rbm_log_z_se``,
    ``rbm_log_z_low``, ``rbm_log_z_high``, ``ais_runs``, ``ais_temperatures``, ``likelihood_data``.
    """
    v = binarize(x, seed).reshape(len(x), -1)
    base = binarize(base_data, seed).reshape(len(base_data), -1) if base_data is not None else v
    estimate = ais_log_partition(model, betas, runs, base_rate_bias(base), seed)
    log_p = rbm_log_likelihood(model, v, estimate["log_z"])
    nll, nll_se = mean_and_standard_error(-log_p)
    return {
        "rbm_nll": nll,
        "rbm_nll_se": nll_se,
        "rbm_bits_per_dim": nll / (v.shape[1] * math.log(2.0)),
        "rbm_nll_low": nll - (estimate["log_z"] - estimate["log_z_low"]),
        "rbm_nll_high": nll + (estimate["log_z_high"] - estimate["log_z"]),
        "rbm_log_z": estimate["log_z"],
        "rbm_log_z_se": estimate["log_z_se"],
        "rbm_log_z_low": estimate["log_z_low"],
        "rbm_log_z_high": estimate["log_z_high"],
        "ais_runs": float(runs),
        "ais_temperatures": float(estimate["temperatures"]),
        "likelihood_data": f"stochastically binarized test images (numpy default_rng({seed}))",
    }


__all__ = [
    "PAPER_STEPS",
    "ais_log_partition",
    "ais_log_weights",
    "ais_steps",
    "base_rate_bias",
    "linear_schedule",
    "log_mean_exp_with_error",
    "paper_schedule",
    "rbm_likelihood",
    "rbm_log_likelihood",
]
