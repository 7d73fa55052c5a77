"""Hamiltonian Monte Carlo in the latent space of an autoencoder: the "Banana-Biscuit-Doughnut" demo.

The model (D parameters, N = 100 observations):

    y_n | theta ~ N(mu_y(theta), sigma_y^2),   theta_i ~ N(0, sigma_theta^2) i.i.d.,
    mu_y(theta) = sum_{k=1}^{ceil(D/2)} theta_{2k-1} + sum_{k=1}^{floor(D/2)} theta_{2k}^2,

with data drawn at mu_y = 1, sigma_y^2 = 4, sigma_theta^2 = 1. Odd coordinates enter linearly, even ones
squared, so the posterior is a thin curved shell (a banana for D = 2) around the surface mu_y(theta) = ybar:
the likelihood depends on theta only through mu_y, with width sigma_y / sqrt(N) = 0.2.

The demo (``run``):
1. samples the posterior by HMC in theta-space (``kgen.mcmc.hmc``), plus a longer reference chain;
2. trains kgen's autoencoder (``kgen.models.ae.AE``, dense, real-valued data, squared error) with a 2-D
   code on the standardised samples: the decoder g maps the plane into theta-space;
3. runs HMC in the latent plane on the pulled-back density and decodes the draws, theta = g(z);
4. compares both samplers (ESS per gradient evaluation and per second, posterior moments against the
   reference), and draws the latent trajectories and their images in theta-space.

The latent density. Restricted to the decoder's surface S = g(R^2), the posterior has density p(theta)
w.r.t. the surface's area; the area formula (Federer 1969, Geometric Measure Theory, 3.2; Diaconis, Holmes &
Shahshahani 2013, "Sampling from a manifold", Section 2) turns it into a density in latent coordinates,

    p_Z(z)  proportional to  p(g(z) | y) * sqrt(det(J_g(z)^T J_g(z))),          ("pullback", the default)

so that theta = g(z) with z ~ p_Z is distributed as the posterior conditioned to lie on S. The volume
factor undoes the decoder's stretching of the plane; without it the draws follow how the network happens to
parametrise S, not the posterior. For D = 2 the map is (where it is one-to-one) a change of variables
and p_Z gives exact posterior draws. The other choice, common when the latent space comes from a VAE with
an N(0, I) prior (e.g. latent-space samplers on generative models), is

    log p_Z(z) = log p(g(z) | y) + log N(z; m, diag(s^2)),                      ("prior")

which drops the volume term and adds a Gaussian prior on the codes (for a plain AE, fitted to the codes of
the training samples). It is cheaper (no Jacobian) but targets a different, parametrisation-dependent
density; the demo runs both and reports how far each lands from the reference.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import keras
import numpy as np
from keras import ops

from kgen import mcmc
from kgen.backend import batch_jacobian
from kgen.models.ae import AE

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["BananaPosterior", "LatentMap", "Settings", "compare", "latent_log_prob", "make_posterior",
           "plot_decoded_trajectories", "plot_latent_trajectory", "plot_moments", "plot_theta_trajectory", "run",
           "settings_for", "train_autoencoder"]

DENSITIES = ("pullback", "prior")
FIGURES = ("latent_trajectory.png", "decoded_trajectories.png", "theta_trajectory.png", "moments.png")


# -- the model -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BananaPosterior:
    """p(theta | y) for the model above; ``log_prob`` in keras.ops for a batch of rows theta (B, D)."""

    y: np.ndarray
    dim: int
    sigma_y2: float = 4.0
    sigma_theta2: float = 1.0

    @property
    def n(self) -> int:
        return len(self.y)

    @property
    def ybar(self) -> float:
        return float(np.mean(self.y))

    @property
    def linear(self) -> np.ndarray:
        """1 for the coordinates that enter mu_y linearly (theta_1, theta_3, ...: 0-based even indices)."""
        return (np.arange(self.dim) % 2 == 0).astype("float32")

    def mu_y(self, theta):
        """mu_y(theta) = sum_odd theta_i + sum_even theta_i^2 (1-based parity), per row."""
        a = ops.convert_to_tensor(self.linear)
        return ops.sum(theta * a + ops.square(theta) * (1.0 - a), axis=-1)

    def log_prob(self, theta):
        """log p(theta | y) up to a constant. With sum_n (y_n - mu)^2 = sum_n (y_n - ybar)^2 + N (ybar - mu)^2,
        the likelihood needs only ybar:

            log p(theta | y) = -N/(2 sigma_y^2) (ybar - mu_y(theta))^2 - |theta|^2/(2 sigma_theta^2) + const.
        """
        residual = self.ybar - self.mu_y(theta)
        return (-0.5 * self.n / self.sigma_y2) * ops.square(residual) - (0.5 / self.sigma_theta2) * ops.sum(
            ops.square(theta), axis=-1)

    # numpy twins, for the tests and the summaries
    def mu_y_numpy(self, theta: np.ndarray) -> np.ndarray:
        theta = np.asarray(theta, "float64")
        return theta @ self.linear + np.square(theta) @ (1.0 - self.linear)

    def log_prob_numpy(self, theta: np.ndarray) -> np.ndarray:
        """The unsimplified log density: sum_n log N(y_n; mu_y, sigma_y^2) + sum_i log N(theta_i; 0, sigma_theta^2)."""
        theta = np.asarray(theta, "float64")
        mu = self.mu_y_numpy(theta)[..., None]
        likelihood = -0.5 * np.sum((self.y - mu) ** 2, axis=-1) / self.sigma_y2 - 0.5 * self.n * math.log(2 * math.pi * self.sigma_y2)
        prior = -0.5 * np.sum(theta**2, axis=-1) / self.sigma_theta2 - 0.5 * self.dim * math.log(2 * math.pi * self.sigma_theta2)
        return likelihood + prior

    def grad_numpy(self, theta: np.ndarray) -> np.ndarray:
        """d log p / d theta_i = N/sigma_y^2 (ybar - mu_y) d mu_y/d theta_i - theta_i / sigma_theta^2, with
        d mu_y / d theta_i = 1 (linear coordinates) or 2 theta_i (squared ones)."""
        theta = np.asarray(theta, "float64")
        dmu = self.linear + 2.0 * theta * (1.0 - self.linear)
        return (self.n / self.sigma_y2) * (self.ybar - self.mu_y_numpy(theta))[..., None] * dmu - theta / self.sigma_theta2


def make_posterior(dim: int, n: int = 100, mu_y: float = 1.0, sigma_y2: float = 4.0, sigma_theta2: float = 1.0,
                   seed: int = 0) -> BananaPosterior:
    """The demo's posterior: N observations y_n ~ N(mu_y, sigma_y^2) drawn with ``seed``."""
    if dim < 1:
        raise ValueError(f"dim must be at least 1, got {dim}")
    y = np.random.default_rng(seed).normal(mu_y, math.sqrt(sigma_y2), size=n)
    return BananaPosterior(y=y, dim=int(dim), sigma_y2=sigma_y2, sigma_theta2=sigma_theta2)


# -- the autoencoder and the latent density ----------------------------------------------------------
@dataclass
class LatentMap:
    """theta = g(z) = shift + scale * decoder(z): the AE works on standardised samples."""

    model: AE
    shift: np.ndarray
    scale: np.ndarray
    code_mean: np.ndarray   # mean and sd of the training samples' codes (the "prior" density's Gaussian)
    code_sd: np.ndarray
    _decode_compiled: object = field(default=None, init=False, repr=False)

    def decode(self, z):
        return ops.convert_to_tensor(self.shift) + ops.convert_to_tensor(self.scale) * self.model.decode(z)

    def decode_numpy(self, z: np.ndarray) -> np.ndarray:
        """g(z) for codes of any leading shape (..., 2), compiled (one compilation per batch shape)."""
        if self._decode_compiled is None:
            self._decode_compiled = mcmc.compiled(self.decode)
        z = np.asarray(z, "float32")
        return self._decode_compiled(z.reshape(-1, z.shape[-1])).reshape(*z.shape[:-1], -1)

    def encode_numpy(self, theta: np.ndarray) -> np.ndarray:
        x = (np.asarray(theta, "float32") - self.shift) / self.scale
        return ops.convert_to_numpy(self.model.encode(ops.convert_to_tensor(x.astype("float32"))))

    def log_volume(self, z):
        """1/2 log det(J^T J), J = d g / d z (B, D, 2): the area element of the surface at g(z). For a 2-D
        code, det(J^T J) = |J_1|^2 |J_2|^2 - (J_1 . J_2)^2 (Gram determinant of the two columns)."""
        jacobian = batch_jacobian(self.decode, z)                 # (B, D, 2)
        c1, c2 = jacobian[..., 0], jacobian[..., 1]
        gram = ops.sum(c1 * c1, -1) * ops.sum(c2 * c2, -1) - ops.square(ops.sum(c1 * c2, -1))
        return 0.5 * ops.log(ops.maximum(gram, 1e-30))


def latent_log_prob(posterior: BananaPosterior, latent: LatentMap, density: str = "pullback") -> mcmc.LogProb:
    """log p_Z(z) for a batch of codes (module docstring): the posterior at g(z) plus the area term
    ("pullback") or a Gaussian fitted to the codes ("prior")."""
    if density not in DENSITIES:
        raise ValueError(f"density must be one of {DENSITIES}, got {density!r}")
    mean, sd = ops.convert_to_tensor(latent.code_mean), ops.convert_to_tensor(latent.code_sd)

    def log_prob(z):
        base = posterior.log_prob(latent.decode(z))
        if density == "pullback":
            return base + latent.log_volume(z)
        return base - 0.5 * ops.sum(ops.square((z - mean) / sd), axis=-1)

    return log_prob


def _initialise(model: AE, rng: np.random.Generator) -> None:
    """Glorot-uniform kernels and zero biases drawn with numpy (Keras's own default initialisers, but the
    same numbers on every backend and no global seeding: ``keras.utils.set_random_seed`` would import
    TensorFlow on the other backends just to seed it)."""
    for network in (model.encoder, model.decoder):
        for layer in network.layers:
            if isinstance(layer, keras.layers.Dense):
                fan_in, fan_out = layer.kernel.shape
                limit = math.sqrt(6.0 / (fan_in + fan_out))
                layer.kernel.assign(rng.uniform(-limit, limit, size=(fan_in, fan_out)).astype("float32"))
                layer.bias.assign(np.zeros(fan_out, "float32"))


def train_autoencoder(samples: np.ndarray, hidden: int = 128, epochs: int = 30, batch_size: int = 64,
                      learning_rate: float = 2e-3, seed: int = 0) -> tuple[LatentMap, dict]:
    """kgen's dense AE with a 2-D code on the standardised samples (squared error, ``data_range="real"``),
    trained with ``compile`` + ``fit`` on a numpy array (the draws shuffled once: consecutive MCMC draws are
    correlated)."""
    samples = np.asarray(samples, "float32").reshape(-1, samples.shape[-1])
    rng = np.random.default_rng(seed)
    shift, scale = samples.mean(axis=0), samples.std(axis=0) + 1e-6
    x = ((samples - shift) / scale)[rng.permutation(len(samples))]
    model = AE(input_shape=(x.shape[1],), latent_dim=2, hidden=hidden, data_range="real", seed=seed)
    _initialise(model, rng)
    model.compile(learning_rate=learning_rate)
    start = time.perf_counter()
    history = model.fit(x, epochs=epochs, batch_size=batch_size, shuffle=False, verbose=0)
    seconds = time.perf_counter() - start
    codes = ops.convert_to_numpy(model.encode(ops.convert_to_tensor(x)))
    latent = LatentMap(model, shift, scale, codes.mean(axis=0), codes.std(axis=0) + 1e-6)
    reconstruction = latent.decode_numpy(codes)
    info = {
        "hidden": hidden, "epochs": epochs, "batch_size": batch_size, "learning_rate": learning_rate,
        "steps": epochs * math.ceil(len(x) / batch_size), "seconds": seconds,
        "final_loss": float(history.history["loss"][-1]),
        # RMS reconstruction error of theta in units of each coordinate's posterior sd, over all coordinates
        "relative_rmse": float(np.sqrt(np.mean(((reconstruction - x * scale - shift) / scale) ** 2))),
    }
    return latent, info


# -- settings ------------------------------------------------------------------------------------------
@dataclass
class Settings:
    """Sizes of one demo run (``settings_for`` picks them from D and ``fast``)."""

    chains: int
    warmup: int
    samples: int
    reference_samples: int
    n_steps: int            # leapfrog steps in theta-space (jittered by +-50%)
    latent_n_steps: int
    hidden: int             # AE hidden width
    epochs: int
    batch_size: int
    learning_rate: float
    target_accept: float = 0.9  # the banana's tips are stiff: a smaller step than delta = 0.8 avoids divergences
    record: tuple[int, ...] = (0, 1, 2, 3, 4, 5)


def settings_for(dim: int, fast: bool) -> Settings:
    """Trajectory lengths grow with D: the shell's thin direction (width ~ sigma_y/sqrt(N) / |grad mu_y|,
    |grad mu_y| ~ sqrt(D/2)) caps the step size while the shell's extent stays O(1)."""
    n_steps = int(min(128, 16 * max(1.0, math.sqrt(dim / 2))))
    if fast:
        return Settings(chains=8, warmup=40, samples=60, reference_samples=80, n_steps=min(n_steps, 10),
                        latent_n_steps=3, hidden=32, epochs=16, batch_size=128, learning_rate=5e-3)
    return Settings(chains=8, warmup=500, samples=1000, reference_samples=5000, n_steps=n_steps, latent_n_steps=16,
                    hidden=128, epochs=40, batch_size=64, learning_rate=2e-3)


# -- summaries -----------------------------------------------------------------------------------------
def _quantities(posterior: BananaPosterior, theta: np.ndarray) -> np.ndarray:
    """(draws, chains, D + 1): theta and mu_y(theta), the quantities whose moments are compared."""
    return np.concatenate([theta, posterior.mu_y_numpy(theta)[..., None]], axis=-1)


def _moments(values: np.ndarray) -> dict:
    flat = values.reshape(-1, values.shape[-1]).astype("float64")
    return {"mean": flat.mean(axis=0), "var": flat.var(axis=0, ddof=1)}


def _sampler_summary(result: mcmc.HMCResult, values: np.ndarray, reference: dict) -> dict:
    """Cost, ESS and moment errors of one sampler. ``values``: its draws of (theta, mu_y)."""
    ess = mcmc.effective_sample_size(values)
    grads = result.n_grad_evals * result.samples.shape[1]  # all chains' gradient evaluations while sampling
    moments = _moments(values)
    ref_sd = np.sqrt(reference["var"])
    mean_error = (moments["mean"] - reference["mean"]) / ref_sd       # in reference posterior sds
    var_ratio = moments["var"] / reference["var"]
    return {
        "chains": int(result.samples.shape[1]), "draws_per_chain": int(result.samples.shape[0]),
        "step_size": result.step_size, "mean_leapfrog_steps": float(result.n_steps.mean()),
        "acceptance_rate": result.acceptance_rate, "divergences": int(result.divergences),
        "grad_evals": int(grads), "warmup_seconds": result.warmup_seconds, "sampling_seconds": result.sampling_seconds,
        "ess_theta": ess[:-1].tolist(), "ess_mu_y": float(ess[-1]),
        "rhat_max": float(mcmc.potential_scale_reduction(values).max()),  # > 1.01: the chains disagree
        "ess_min": float(ess.min()), "ess_median": float(np.median(ess)),
        "ess_per_grad_min": float(ess.min() / grads), "ess_per_grad_median": float(np.median(ess) / grads),
        "ess_per_second_min": float(ess.min() / result.sampling_seconds),
        "ess_per_second_median": float(np.median(ess) / result.sampling_seconds),
        "mean_theta": moments["mean"][:-1].tolist(), "var_theta": moments["var"][:-1].tolist(),
        "mean_mu_y": float(moments["mean"][-1]), "var_mu_y": float(moments["var"][-1]),
        # errors against the reference: mean error in reference sds, variance ratio (1 = right)
        "mean_error_sd_max": float(np.abs(mean_error).max()), "mean_error_sd_rms": float(np.sqrt(np.mean(mean_error**2))),
        "var_ratio_theta": var_ratio[:-1].tolist(), "var_ratio_mu_y": float(var_ratio[-1]),
        "var_ratio_min": float(var_ratio.min()), "var_ratio_max": float(var_ratio.max()),
        "log_var_ratio_rms": float(np.sqrt(np.mean(np.log(var_ratio) ** 2))),
    }


def compare(posterior: BananaPosterior, reference_run: mcmc.HMCResult, theta_run: mcmc.HMCResult,
            latent_runs: dict[str, mcmc.HMCResult], decoded: dict[str, np.ndarray]) -> dict:
    """The numbers of the comparison: the reference chain's moments, and for HMC in theta-space and each
    latent run (its draws ``decoded`` into theta-space) ESS per gradient evaluation and per second and the
    moment errors against the reference. Keys: "reference", "theta_hmc", "latent_hmc" (the first density of
    ``latent_runs``) and "latent_hmc_<density>" for the others."""
    reference_values = _quantities(posterior, reference_run.samples)
    reference = _moments(reference_values)
    summary = {
        "reference": {"chains": int(reference_run.samples.shape[1]), "draws_per_chain": int(reference_run.samples.shape[0]),
                      "mean_theta": reference["mean"][:-1].tolist(), "var_theta": reference["var"][:-1].tolist(),
                      "mean_mu_y": float(reference["mean"][-1]), "var_mu_y": float(reference["var"][-1]),
                      "ess_min": float(mcmc.effective_sample_size(reference_values).min()),
                      "rhat_max": float(mcmc.potential_scale_reduction(reference_values).max()),
                      "acceptance_rate": reference_run.acceptance_rate, "divergences": int(reference_run.divergences)},
        "theta_hmc": _sampler_summary(theta_run, _quantities(posterior, theta_run.samples), reference),
    }
    for i, (density, result) in enumerate(latent_runs.items()):
        values = _quantities(posterior, decoded[density])
        summary["latent_hmc" if i == 0 else f"latent_hmc_{density}"] = _sampler_summary(result, values, reference) | {
            "density": density, "ess_latent": mcmc.effective_sample_size(result.samples).tolist(),
            "mu_y_sd": float(values[..., -1].std()),
        }
    return summary


# -- figures -------------------------------------------------------------------------------------------
def _figure(width: float, height: float) -> "Figure":
    """A Figure on its own Agg canvas (pyplot's global state, e.g. a notebook's, is untouched)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(figure)
    return figure


def _draw_trajectories(axes, paths: list[np.ndarray], accepted: list[bool]) -> None:
    """Leapfrog paths (positions along each) with the start (black square, first iteration: star) and
    the proposal: a filled green circle when accepted, a red cross when rejected."""
    colours = ["#1f77b4", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f"]
    for i, (path, ok) in enumerate(zip(paths, accepted)):
        colour = colours[i % len(colours)]
        axes.plot(path[:, 0], path[:, 1], "-", color=colour, lw=1.2, alpha=0.9)
        axes.plot(path[1:-1, 0], path[1:-1, 1], ".", color=colour, ms=3)
        axes.plot(path[0, 0], path[0, 1], "*" if i == 0 else "s", color="black", ms=12 if i == 0 else 5, zorder=5)
        if ok:
            axes.plot(path[-1, 0], path[-1, 1], "o", color="tab:green", ms=8, mec="black", zorder=6)
        else:
            axes.plot(path[-1, 0], path[-1, 1], "x", color="tab:red", ms=9, mew=2.5, zorder=6)


def _legend(axes) -> None:
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], marker="*", color="black", ls="", ms=10, label="start"),
               Line2D([], [], marker="o", color="tab:green", mec="black", ls="", ms=7, label="accepted proposal"),
               Line2D([], [], marker="x", color="tab:red", mew=2, ls="", ms=8, label="rejected proposal")]
    axes.legend(handles=handles, loc="upper right", fontsize=7, framealpha=0.8)


def _paths(result: mcmc.HMCResult, chain: int = 0) -> tuple[list[np.ndarray], list[bool]]:
    return ([t.positions[:, chain] for t in result.trajectories],
            [bool(t.accepted[chain]) for t in result.trajectories])


def plot_latent_trajectory(log_prob, result: mcmc.HMCResult, density: str) -> "Figure":
    """The latent density on a grid, the latent draws, and the recorded leapfrog paths of chain 0."""
    draws = result.samples.reshape(-1, 2)
    paths, accepted = _paths(result)
    everything = np.concatenate([draws] + paths)
    low, high = np.percentile(everything, 0.5, axis=0), np.percentile(everything, 99.5, axis=0)
    pad = 0.15 * (high - low)
    low, high = low - pad, high + pad
    g1, g2 = np.meshgrid(np.linspace(low[0], high[0], 120), np.linspace(low[1], high[1], 120))
    grid = np.stack([g1.ravel(), g2.ravel()], axis=1).astype("float32")
    evaluate = mcmc.compiled(log_prob)
    values = np.concatenate([evaluate(chunk) for chunk in np.split(grid, 8)]).astype("float64")
    # log density relative to its maximum on the grid, floored at -12: for D > 2 the density can be a ridge
    # narrower than a grid cell, invisible on a linear scale
    values = np.where(np.isfinite(values), values, -np.inf)
    relative = np.maximum(values - values.max(), -12.0).reshape(g1.shape)
    figure = _figure(6.5, 5.5)
    axes = figure.subplots()
    filled = axes.contourf(g1, g2, relative, levels=np.linspace(-12, 0, 13), cmap="Blues", alpha=0.75)
    figure.colorbar(filled, ax=axes, label=r"$\log p_Z(z) - \max \log p_Z$")
    axes.plot(draws[:, 0], draws[:, 1], ".", color="0.15", ms=1.5, alpha=0.5)
    _draw_trajectories(axes, paths, accepted)
    _legend(axes)
    axes.set_xlim(low[0], high[0]); axes.set_ylim(low[1], high[1])
    axes.set_xlabel("$z_1$"); axes.set_ylabel("$z_2$")
    axes.set_title(f"HMC in the AE's latent plane ({density} density): {len(paths)} iterations of chain 0", fontsize=9)
    figure.tight_layout()
    return figure


def _pairs(dim: int) -> list[tuple[int, int]]:
    pairs = [(0, 1), (0, 2), (1, 2), (2, 3)]
    return [(i, j) for i, j in pairs if j < dim][:4] or [(0, 0)]


def plot_decoded_trajectories(latent: LatentMap, result: mcmc.HMCResult, theta_draws: np.ndarray,
                              decoded_draws: np.ndarray) -> "Figure":
    """The latent paths mapped through the decoder, over pairs of theta coordinates, on top of the
    theta-space HMC draws (grey) and the decoded latent draws (blue)."""
    paths, accepted = _paths(result)
    # one decoder call for all the paths (one compilation), split back into paths
    decoded_paths = np.split(latent.decode_numpy(np.concatenate(paths)), np.cumsum([len(p) for p in paths])[:-1])
    theta = theta_draws.reshape(-1, theta_draws.shape[-1])
    decoded = decoded_draws.reshape(-1, decoded_draws.shape[-1])
    pairs = _pairs(theta.shape[-1])
    figure = _figure(4.2 * len(pairs), 4.2)
    for axes, (i, j) in zip(np.atleast_1d(figure.subplots(1, len(pairs))), pairs):
        axes.plot(theta[:, i], theta[:, j], ".", color="0.6", ms=2, alpha=0.5, label="HMC in theta-space")
        axes.plot(decoded[:, i], decoded[:, j], ".", color="tab:blue", ms=1.5, alpha=0.4, label="decoded latent HMC")
        _draw_trajectories(axes, [p[:, [i, j]] for p in decoded_paths], accepted)
        axes.set_xlabel(rf"$\theta_{{{i + 1}}}$"); axes.set_ylabel(rf"$\theta_{{{j + 1}}}$")
    axes.legend(loc="upper right", fontsize=7, markerscale=4)
    figure.suptitle("latent HMC trajectories decoded into theta-space", fontsize=10)
    figure.tight_layout()
    return figure


def plot_theta_trajectory(result: mcmc.HMCResult) -> "Figure":
    """HMC in theta-space: the recorded paths of chain 0 over (theta_1, theta_2) and the draws."""
    theta = result.samples.reshape(-1, result.samples.shape[-1])
    paths, accepted = _paths(result)
    j = 1 if theta.shape[-1] > 1 else 0
    figure = _figure(5.5, 5)
    axes = figure.subplots()
    axes.plot(theta[:, 0], theta[:, j], ".", color="0.6", ms=2, alpha=0.5)
    _draw_trajectories(axes, [p[:, [0, j]] for p in paths], accepted)
    _legend(axes)
    axes.set_xlabel(r"$\theta_1$"); axes.set_ylabel(rf"$\theta_{{{j + 1}}}$")
    axes.set_title(f"HMC in theta-space (D = {theta.shape[-1]}): {len(paths)} iterations of chain 0", fontsize=9)
    figure.tight_layout()
    return figure


def plot_moments(summary: dict, dim: int) -> "Figure":
    """Posterior means and variances of theta_1.. (up to 10) and mu_y: reference vs both samplers."""
    shown = min(dim, 10)
    labels = [rf"$\theta_{{{i + 1}}}$" for i in range(shown)] + [r"$\mu_y$"]
    ref = summary["reference"]
    rows = {"reference": (ref["mean_theta"][:shown] + [ref["mean_mu_y"]], ref["var_theta"][:shown] + [ref["var_mu_y"]])}
    for key, name in (("theta_hmc", "HMC in theta-space"), ("latent_hmc", "latent HMC (pullback)"),
                      ("latent_hmc_prior", "latent HMC (prior)")):
        if key in summary:
            s = summary[key]
            rows[name] = (s["mean_theta"][:shown] + [s["mean_mu_y"]], s["var_theta"][:shown] + [s["var_mu_y"]])
    figure = _figure(max(6.0, 0.7 * (shown + 1) * 2), 3.8)
    x = np.arange(shown + 1)
    width = 0.8 / len(rows)
    for axes, k, title in zip(figure.subplots(1, 2), (0, 1), ("posterior mean", "posterior variance")):
        for r, (name, values) in enumerate(rows.items()):
            axes.bar(x + (r - (len(rows) - 1) / 2) * width, values[k], width, label=name)
        axes.set_xticks(x, labels); axes.set_title(title, fontsize=9)
        if k == 1:
            axes.set_yscale("log")
    handles, names = axes.get_legend_handles_labels()
    figure.legend(handles, names, loc="lower center", ncol=len(rows), fontsize=7, frameon=False)
    figure.tight_layout(rect=(0, 0.07, 1, 1))
    return figure


# -- the demo ------------------------------------------------------------------------------------------
def _initial_points(draws: np.ndarray, chains: int, rng: np.random.Generator) -> np.ndarray:
    flat = draws.reshape(-1, draws.shape[-1])
    return flat[rng.choice(len(flat), size=chains, replace=False)].astype("float32")


def run(dim: int, out: Path | str, fast: bool = False, seed: int = 0, densities: tuple[str, ...] = DENSITIES,
        verbose: bool = False) -> dict:
    """Run the demo for D = ``dim`` and write its figures and ``latent_hmc.json`` to ``out``.

    ``fast``: a smoke-test size (a few hundred draws, a few hundred AE steps; seconds to tens of seconds).
    ``densities``: latent densities to sample, the first one drawn in the figures ("pullback", "prior").
    Returns the summary that ``latent_hmc.json`` holds (plus ``"files"``: the paths written).
    """
    if dim < 2:
        raise ValueError(f"dim must be at least 2 (the autoencoder's code is 2-D), got {dim}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    densities = tuple(densities)
    if not densities:
        raise ValueError(f"densities must name at least one of {DENSITIES}")
    for density in densities:
        if density not in DENSITIES:
            raise ValueError(f"density must be one of {DENSITIES}, got {density!r}")
    cfg = settings_for(dim, fast)
    rng = np.random.default_rng(seed)
    posterior = make_posterior(dim, seed=seed)
    say = print if verbose else (lambda *a, **k: None)
    start = time.perf_counter()

    # 1. HMC in theta-space, from prior draws; a longer independent reference chain.
    def theta_hmc(samples, seed_, record=()):
        return mcmc.hmc(posterior.log_prob, rng.normal(size=(cfg.chains, dim)).astype("float32") * 0.5, samples,
                        n_warmup=cfg.warmup, n_steps=cfg.n_steps, jitter=0.5, target_accept=cfg.target_accept,
                        adapt_mass=True, record=record, seed=seed_)

    theta_run = theta_hmc(cfg.samples, seed, cfg.record)
    say(f"[latent-hmc] theta-space HMC: {theta_run.sampling_seconds:.1f} s, accept {theta_run.acceptance_rate:.2f}")
    reference_run = theta_hmc(cfg.reference_samples, seed + 1)

    # 2. The autoencoder on the theta-space draws.
    latent, ae_info = train_autoencoder(theta_run.samples, hidden=cfg.hidden, epochs=cfg.epochs,
                                        batch_size=cfg.batch_size, learning_rate=cfg.learning_rate, seed=seed)
    say(f"[latent-hmc] autoencoder: loss {ae_info['final_loss']:.4f}, relative RMSE {ae_info['relative_rmse']:.3f}")

    # 3. HMC in the latent plane, started from the codes of posterior draws.
    z0 = latent.encode_numpy(_initial_points(theta_run.samples, cfg.chains, rng))
    latent_runs, latent_log_probs = {}, {}
    for density in densities:
        latent_log_probs[density] = latent_log_prob(posterior, latent, density)
        latent_runs[density] = mcmc.hmc(latent_log_probs[density], z0, cfg.samples, n_warmup=cfg.warmup,
                                        n_steps=cfg.latent_n_steps, jitter=0.5, target_accept=cfg.target_accept,
                                        record=cfg.record, seed=seed + 2)
        say(f"[latent-hmc] latent HMC ({density}): {latent_runs[density].sampling_seconds:.1f} s")

    # 4. Numbers.
    decoded = {density: latent.decode_numpy(result.samples) for density, result in latent_runs.items()}
    summary = {
        "dim": dim, "n_data": posterior.n, "ybar": posterior.ybar, "sigma_y2": posterior.sigma_y2,
        "sigma_theta2": posterior.sigma_theta2, "mu_y_likelihood_sd": math.sqrt(posterior.sigma_y2 / posterior.n),
        "seed": seed, "fast": fast, "backend": keras.backend.backend(), "density": densities[0],
        "settings": cfg.__dict__ | {"record": list(cfg.record)}, "autoencoder": ae_info,
        **compare(posterior, reference_run, theta_run, latent_runs, decoded),
    }

    # 5. Figures.
    main = densities[0]
    figures = {
        "latent_trajectory.png": plot_latent_trajectory(latent_log_probs[main], latent_runs[main], main),
        "decoded_trajectories.png": plot_decoded_trajectories(latent, latent_runs[main], theta_run.samples, decoded[main]),
        "theta_trajectory.png": plot_theta_trajectory(theta_run),
        "moments.png": plot_moments(summary, dim),
    }
    files = []
    for name, figure in figures.items():
        figure.savefig(out / name)
        files.append(str(out / name))
    np.savez_compressed(out / "latent_hmc_draws.npz", theta=theta_run.samples, reference=reference_run.samples,
                        **{f"latent_{d}": r.samples for d, r in latent_runs.items()},
                        **{f"decoded_{d}": v for d, v in decoded.items()})
    files.append(str(out / "latent_hmc_draws.npz"))
    summary["seconds"] = time.perf_counter() - start
    summary["files"] = files + [str(out / "latent_hmc.json")]
    (out / "latent_hmc.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
