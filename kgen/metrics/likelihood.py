"""How likely is the test set under a VAE? The ELBO and the importance-weighted bound.

For an example x, K draws z_k ~ q(z|x) and their log importance weights

    log w_k = log p(x | z_k) + log p(z_k) - log q(z_k | x),     p(z) = N(0, I),

give two lower bounds on log p(x) (Burda, Grosse & Salakhutdinov 2016):

    ELBO     = E_q[log w]                              estimated by (1/K) sum_k log w_k
    L_K      = E[log (1/K) sum_k w_k]                  (eq. 8), estimated by log-mean-exp_k log w_k

with ELBO = L_1 <= L_K <= L_{K+1} <= log p(x) (their Theorem 1), L_K -> log p(x) as K grows.
A single log-mean-exp is a random number whose *expectation* is L_K: one realisation can
exceed log p(x) (the mean of the w_k is an unbiased estimate of p(x)), by a margin that shrinks
with K. The reported number is the mean over examples of -L_K in nats per example, its standard
error over examples, and bits per dimension, nats / (D ln 2).

Numerics. The weights are computed in float32 on the backend in blocks of ``chunk`` samples
for ``batch_size`` examples at a time (one decoder call on batch_size * chunk latents), and
accumulated in float64 numpy as a running log-sum-exp (max, scaled sum) per example, so K =
5,000 never holds more than one block. The noise eps of z = mean + sigma * eps comes from
numpy: example i of the set draws its K normals from ``np.random.default_rng([seed, i])``, in
order, so the estimate of an example depends on (seed, i, K) only -- not on the batch size, the
chunk size or the backend (up to float32 round-off).

Which data. A likelihood is only comparable when the data are stated:
- Bernoulli decoder: binary test images, each pixel ~ Bernoulli(grey level) with
  ``np.random.default_rng(seed)`` over the whole array (``binarize``; a fixed binarisation, as
  in the IWAE paper's "dynamically binarized MNIST" evaluation).
- Gaussian decoder on 8-bit images: uniform dequantisation t = k + u, u ~ U[0, 1)^D, of the
  integer levels k in 0..255, y = low + t (high - low) / 256 in the model's data range
  (``dequantize``). With the change of variables p_t(t) = p_y(y) ((high - low) / 256)^D and
  Jensen over u (Theis, van den Oord & Bethge 2016, section 3.1),

      log P(k) = log int_[0,1)^D p_t(k + u) du  >=  E_u[log p_y(y)] + D log((high - low) / 256),

  so the reported number, -(L_K(y) + D log((high - low) / 256)), is an upper bound (in
  expectation) on the negative *discrete* log-likelihood of the 8-bit image, nats per image, and
  bits/dim is the usual 8-bit figure (8 = a uniform model). The model was trained on k / 255;
  the dequantised y lie in [k/256, (k+1)/256), the standard convention.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from keras import ops

from kgen.metrics.compiled import compiled
from kgen.models.base import DATA_BOUNDS

LOG_2PI = math.log(2.0 * math.pi)


# -- the terms of log w, in keras.ops ----------------------------------------------------------
def log_normal_diag(z, mean, log_var):
    """log N(z | mean, diag(exp(log_var))), summed over the last axis:
    -0.5 * sum(log 2 pi + log_var + (z - mean)^2 / exp(log_var))."""
    return -0.5 * ops.sum(LOG_2PI + log_var + ops.square(z - mean) * ops.exp(-log_var), axis=-1)


def log_standard_normal(z):
    """log N(z | 0, I), the VAE's prior p(z), summed over the last axis."""
    return -0.5 * ops.sum(LOG_2PI + ops.square(z), axis=-1)


def decoder_log_likelihood(model, x, z):
    """log p(x | z) for rows x (B, ...) and latents z (B, L): minus the model's own reconstruction
    NLL (Bernoulli: -BCE of the logits; Gaussian: the learned-sigma Gaussian log density)."""
    return -model.reconstruction_nll(x, model.decoder(z, training=False))


def log_importance_weights(model, x, eps):
    """log w = log p(x|z) + log p(z) - log q(z|x) at z = mean(x) + exp(log_var(x) / 2) * eps.

    ``x``: (B, ...) data; ``eps``: (B, S, L) standard normal draws. Returns (B, S) float32,
    the decoder run once on the B * S latents. ``model``: a kgen VAE (``encode(x)`` ->
    (mean, log_var), ``decoder``, ``reconstruction_nll``).
    """
    x = ops.convert_to_tensor(x, "float32")
    eps = ops.convert_to_tensor(eps, "float32")
    samples = ops.shape(eps)[1]
    mean, log_var = model.encode(x, training=False)
    mean, log_var = mean[:, None, :], log_var[:, None, :]
    z = mean + ops.exp(0.5 * log_var) * eps  # (B, S, L)
    log_q = log_normal_diag(z, mean, log_var)
    log_prior = log_standard_normal(z)
    flat_z = ops.reshape(z, (-1, int(model.latent_dim)))
    flat_x = ops.repeat(x, samples, axis=0)  # row b*S + s is example b
    log_px_z = ops.reshape(decoder_log_likelihood(model, flat_x, flat_z), (-1, samples))
    return log_px_z + log_prior - log_q


# -- accumulation over chunks, in float64 -------------------------------------------------------
class _RunningLogSumExp:
    """Per-example log sum_k w_k, log sum_k w_k^2 and sum_k log w_k over chunks of samples."""

    def __init__(self, n: int):
        self.top = np.full(n, -np.inf)
        self.total = np.zeros(n)  # sum exp(log w - top)
        self.squares = np.zeros(n)  # sum exp(2 (log w - top))
        self.log_sum = np.zeros(n)  # sum log w
        self.count = 0

    def add(self, log_w: np.ndarray) -> None:
        log_w = np.asarray(log_w, np.float64)
        top = np.maximum(self.top, log_w.max(axis=1))
        scale = np.exp(self.top - top)  # 0 on the first chunk (top was -inf)
        shifted = np.exp(log_w - top[:, None])
        self.total = self.total * scale + shifted.sum(axis=1)
        self.squares = self.squares * scale**2 + np.square(shifted).sum(axis=1)
        self.log_sum += log_w.sum(axis=1)
        self.top = top
        self.count += log_w.shape[1]

    def log_mean_exp(self) -> np.ndarray:
        return self.top + np.log(self.total) - math.log(self.count)

    def effective_sample_size(self) -> np.ndarray:
        """(sum w)^2 / sum w^2 (Kong 1992): K for equal weights, 1 when one weight dominates."""
        return self.total**2 / self.squares


def importance_sampling(model, x: np.ndarray, k: int = 5000, seed: int = 0, batch_size: int | None = None,
                        chunk: int | None = None, first_index: int = 0,
                        log_weights: Callable | None = None) -> dict[str, np.ndarray]:
    """Per-example IWAE bound L_K (Burda et al. 2016, eq. 8), the K-sample ELBO and the effective
    sample size, as float64 arrays of length len(x).

    Example i draws eps from ``np.random.default_rng([seed, first_index + i])`` (so a slice of a
    data set, given its offset, reproduces the whole set's per-example values). ``chunk``: samples
    per decoder call per example (default min(k, 1000)); ``batch_size``: examples per call (default:
    about 8,192 latents per call). ``log_weights``: the (model, x, eps) -> (B, S) keras.ops function
    (``log_importance_weights``), run compiled (``kgen.metrics.compiled``).
    """
    if k < 1:
        raise ValueError(f"the number of importance samples must be >= 1, got {k}")
    x = np.asarray(x, np.float32)
    log_weights = compiled(model, log_weights or log_importance_weights)
    chunk = min(k, chunk or 1000)
    batch_size = max(1, min(batch_size or 8192 // chunk, len(x)))
    latent = int(model.latent_dim)
    out = {name: np.empty(len(x)) for name in ("log_likelihood", "elbo", "effective_sample_size")}
    for start in range(0, len(x), batch_size):
        rows = x[start : start + batch_size]
        n = len(rows)
        # Every call gets the same (batch_size, chunk) shape -- the last batch and chunk padded, the
        # padding dropped -- so a backend that compiles per shape (JAX's eager ops) compiles once.
        padded_rows = np.concatenate([rows, np.repeat(rows[:1], batch_size - n, axis=0)]) if n < batch_size else rows
        rngs = [np.random.default_rng([seed, first_index + start + i]) for i in range(n)]
        totals = _RunningLogSumExp(n)
        for done in range(0, k, chunk):
            size = min(chunk, k - done)
            eps = np.zeros((batch_size, chunk, latent), np.float32)
            for i, rng in enumerate(rngs):
                eps[i, :size] = rng.standard_normal((size, latent), dtype=np.float32)
            totals.add(log_weights(padded_rows, eps)[:n, :size])
        block = slice(start, start + len(rows))
        out["log_likelihood"][block] = totals.log_mean_exp()
        out["elbo"][block] = totals.log_sum / k
        out["effective_sample_size"][block] = totals.effective_sample_size()
    return out


# -- the data a likelihood is reported on -------------------------------------------------------
def binarize(x: np.ndarray, seed: int = 0) -> np.ndarray:
    """Stochastic binarisation: each value in [0, 1] becomes 1 with that probability, drawn by
    ``np.random.default_rng(seed).random(x.shape)`` (a prefix of x gets the same bits)."""
    x = np.asarray(x, np.float32)
    if x.size and (x.min() < 0.0 or x.max() > 1.0):
        raise ValueError("binarize needs values in [0, 1]")
    return (np.random.default_rng(seed).random(x.shape, dtype=np.float32) < x).astype(np.float32)


def integer_levels(x: np.ndarray, data_range: str) -> np.ndarray:
    """The 8-bit levels 0..255 of images scaled to a bounded data range (the pipeline's k/255 or k/127.5 - 1)."""
    if data_range not in DATA_BOUNDS:
        raise ValueError(f"8-bit levels need bounded data (unit or symmetric), got {data_range!r}")
    low, high = DATA_BOUNDS[data_range]
    return np.clip(np.rint((np.asarray(x, np.float64) - low) / (high - low) * 255.0), 0, 255)


def dequantize(x: np.ndarray, data_range: str, seed: int = 0) -> tuple[np.ndarray, float]:
    """Uniform dequantisation of 8-bit images in ``data_range``: y = low + (k + u) (high - low) / 256,
    u ~ U[0, 1) from ``np.random.default_rng(seed)``. Returns (y, log_jacobian) with log_jacobian =
    D log((high - low) / 256) per example: log P(k) >= log p_y(y) + log_jacobian (in expectation over u)."""
    levels = integer_levels(x, data_range)
    low, high = DATA_BOUNDS[data_range]
    u = np.random.default_rng(seed).random(levels.shape)
    y = (low + (levels + u) * (high - low) / 256.0).astype(np.float32)
    dims = int(np.prod(levels.shape[1:]))
    return y, dims * math.log((high - low) / 256.0)


def likelihood_data(model, x: np.ndarray, seed: int = 0, dequantize_data: bool = True) -> tuple[np.ndarray, float, str]:
    """The data a VAE's likelihood is reported on, the per-example log-density correction to add,
    and a sentence saying what it is.

    Bernoulli decoder: ``binarize(x, seed)``, no correction. Gaussian decoder on bounded data
    (``dequantize_data``): ``dequantize(x, data_range, seed)``, correction D log((high-low)/256),
    giving a discrete 8-bit log-likelihood. Otherwise the continuous density of x itself.
    """
    kind = getattr(model, "loss_kind", None)
    data_range = model.hparams.get("data_range", "unit")
    if kind == "bernoulli":
        return binarize(x, seed), 0.0, f"stochastically binarized test images (numpy default_rng({seed}))"
    if dequantize_data and data_range in DATA_BOUNDS:
        y, correction = dequantize(x, data_range, seed)
        return y, correction, (f"8-bit images uniformly dequantized (numpy default_rng({seed})): discrete "
                               "log-likelihood of the 8-bit image, Jensen bound over the dequantization noise")
    return np.asarray(x, np.float32), 0.0, f"continuous log-density of the {data_range}-range data"


def mean_and_standard_error(values: np.ndarray) -> tuple[float, float]:
    """Mean and standard error of the mean, std(ddof=1) / sqrt(n) (0 for one value)."""
    values = np.asarray(values, np.float64)
    se = float(values.std(ddof=1) / math.sqrt(len(values))) if len(values) > 1 else 0.0
    return float(values.mean()), se


def vae_likelihood(model, x: np.ndarray, k: int = 5000, seed: int = 0, batch_size: int | None = None,
                   chunk: int | None = None, dequantize_data: bool = True) -> dict:
    """Test negative log-likelihood of a VAE: -ELBO and -L_K (Burda et al. 2016, eq. 8), K = ``k``.

    ``x``: images in the model's data range (``kgen.evaluate.split_arrays``). The data are first
    prepared by ``likelihood_data`` (binarized for a Bernoulli decoder, dequantized for a
    Gaussian one; the same ``seed`` as the importance samples). Returns, in nats per example
    (mean over examples, ``*_se`` its standard error) and bits per dimension:

    - ``iwae_nll``: -L_K, the importance-weighted bound on -log p(x) (the headline number);
    - ``negative_elbo``: -ELBO, estimated from the same K samples;
    - ``iwae_bits_per_dim``, ``negative_elbo_bits_per_dim``: the same / (D ln 2);
    - ``iwae_effective_sample_size``: mean (sum w)^2 / sum w^2 (small = q far from the posterior);
    - ``importance_samples``, ``likelihood_examples``, ``likelihood_seed``, ``likelihood_data``.
    """
    data, correction, description = likelihood_data(model, x, seed, dequantize_data)
    values = importance_sampling(model, data, k, seed, batch_size, chunk)
    dims = int(np.prod(np.shape(data)[1:]))
    report: dict = {}
    for name, per_example in (("iwae_nll", values["log_likelihood"]), ("negative_elbo", values["elbo"])):
        mean, se = mean_and_standard_error(-(per_example + correction))
        report[name] = mean
        report[f"{name}_se"] = se
        report[f"{'iwae' if name == 'iwae_nll' else name}_bits_per_dim"] = mean / (dims * math.log(2.0))
    report["iwae_effective_sample_size"] = float(np.mean(values["effective_sample_size"]))
    report.update({"importance_samples": float(k), "likelihood_examples": float(len(data)),
                   "likelihood_seed": float(seed), "likelihood_data": description})
    return report


__all__ = ["binarize", "decoder_log_likelihood", "dequantize", "importance_sampling", "integer_levels",
           "likelihood_data", "log_importance_weights", "log_normal_diag", "log_standard_normal",
           "mean_and_standard_error", "vae_likelihood"]
