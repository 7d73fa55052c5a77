"""Hamiltonian Monte Carlo, written once in ``keras.ops``, and effective sample sizes.

HMC (Duane et al. 1987; Neal 2011, "MCMC using Hamiltonian dynamics", Handbook of MCMC ch. 5) samples a
density pi(q) on R^D by simulating Hamiltonian dynamics with potential U(q) = -log pi(q) and kinetic
energy K(p) = 1/2 p^T M^{-1} p, then accepting the end point with the Metropolis probability
min(1, exp(H(q, p) - H(q', p'))), H = U + K (Neal 2011, Section 5.3).

- The dynamics are integrated with the leapfrog scheme (Neal 2011, eqs. 5.18-5.20); its map is volume
  preserving and, with the momentum negated, its own inverse, which is what makes the Metropolis
  correction exact. Its energy error is O(eps^2) over a fixed trajectory length.
- The step size is tuned during warm-up by dual averaging (Hoffman & Gelman 2014, "The No-U-Turn
  Sampler", JMLR 15, Section 3.2.1 and Algorithm 5; gamma = 0.05, t0 = 10, kappa = 0.75), starting
  from the heuristic of their Algorithm 4.
- The number of leapfrog steps is fixed or jittered uniformly around its value (Neal 2011, Section 5.4:
  randomising the trajectory length avoids periodic orbits).
- The mass matrix is diagonal; it is given, or estimated from the draws of a warm-up window (Stan's
  windowed adaptation, simplified to one slow window; Stan Reference Manual, "HMC algorithm parameters").
- Chains are a batch: the state is a (chains, D) array and ``log_prob`` maps it to (chains,). One
  gradient call (``kgen.backend.input_gradient`` of the sum over chains, whose gradient w.r.t. row c is
  that chain's gradient since the rows are independent) moves every chain at once; the chains share the
  step size and the number of leapfrog steps.

A whole leapfrog trajectory runs as one compiled program: the loop is a ``keras.ops.fori_loop`` inside the
``call`` of a small ``keras.Model`` run through ``predict_on_batch``, which Keras compiles per backend
(``tf.function``/XLA on TensorFlow, ``jax.jit`` on JAX, eager on PyTorch). The Metropolis step, the
adaptation and the random numbers (numpy, so one seed gives the same momenta on every backend) run in
numpy between trajectories.

Effective sample size: :func:`effective_sample_size` is the multi-chain estimator of Stan and ArviZ
(Gelman et al., Bayesian Data Analysis 3rd ed., Section 11.5; Vehtari et al. 2021, "Rank-normalization,
folding, and localization: an improved R-hat", Bayesian Analysis 16(2)): autocorrelations
from the FFT, combined across (split) chains through the between/within variance estimator, summed
with Geyer's (1992) initial monotone sequence truncation.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import keras
import numpy as np
from keras import ops

from kgen.backend import input_gradient

__all__ = [
    "DualAveraging",
    "HMCResult",
    "Trajectory",
    "compiled",
    "effective_sample_size",
    "hmc",
    "integrated_autocorrelation_time",
    "leapfrog",
    "log_prob_and_grad",
    "monte_carlo_standard_error",
    "potential_scale_reduction",
]

LogProb = Callable[[object], object]  # (chains, D) tensor -> (chains,) tensor of log densities


# -- the leapfrog integrator (keras.ops) -------------------------------------------------------------
def _grad_log_prob(log_prob: LogProb, q, differentiable: bool = False):
    """d/dq sum_c log pi(q_c): row c is chain c's gradient (the rows do not interact).

    ``stop_gradient`` cuts the link to earlier steps (PyTorch would otherwise keep the graph of the
    whole trajectory alive: ``input_gradient`` builds it with ``create_graph=True``); ``differentiable``
    keeps it, for differentiating the leapfrog map itself."""
    if not differentiable:
        q = ops.stop_gradient(q)
    grad = input_gradient(lambda x: ops.sum(log_prob(x)), q)
    return grad if differentiable else ops.stop_gradient(grad)


def _leapfrog_step(log_prob: LogProb, q, p, grad, step_size, inverse_mass, differentiable: bool = False):
    """One leapfrog step (Neal 2011, eqs. 5.18-5.20), with grad = d log pi / dq = -dU/dq at q:

        p_half = p + (eps/2) grad log pi(q)
        q'     = q + eps M^{-1} p_half
        p'     = p_half + (eps/2) grad log pi(q')

    Returns q', p' and grad log pi(q') (reused as the next step's first gradient, so a trajectory of L
    steps costs L gradient evaluations)."""
    p = p + 0.5 * step_size * grad
    q = q + step_size * inverse_mass * p
    grad = _grad_log_prob(log_prob, q, differentiable)
    p = p + 0.5 * step_size * grad
    return q, p, grad


def leapfrog(log_prob: LogProb, q, p, step_size: float, n_steps: int, inverse_mass=None, *,
             record: bool = False, differentiable: bool = False, jit_compile: bool | str = "auto") -> tuple:
    """``n_steps`` leapfrog steps from (q, p), the steps the sampler runs.

    ``q``, ``p``: (chains, D); ``inverse_mass``: the diagonal of M^{-1}, shape (D,) (default: ones).
    Returns (q', p') or, with ``record``, (q', p', path) where path is the (n_steps + 1, chains, D) array of
    positions, start included; numpy arrays, from the compiled trajectory program. With
    ``differentiable`` the steps run eagerly instead and return tensors that keep the autodiff graph (to
    differentiate the leapfrog map itself, e.g. its Jacobian)."""
    dim = ops.shape(q)[-1]
    if differentiable:
        q, p = ops.convert_to_tensor(q, "float32"), ops.convert_to_tensor(p, "float32")
        inverse_mass = ops.ones((dim,)) if inverse_mass is None else ops.convert_to_tensor(inverse_mass, "float32")
        grad = _grad_log_prob(log_prob, q, True)
        path = [q]
        for _ in range(int(n_steps)):
            q, p, grad = _leapfrog_step(log_prob, q, p, grad, step_size, inverse_mass, True)
            path.append(q)
        return (q, p, ops.stack(path)) if record else (q, p)
    q, p = (np.asarray(ops.convert_to_numpy(v), "float32") for v in (q, p))
    inverse_mass = np.ones(dim) if inverse_mass is None else np.asarray(inverse_mass, "float64")
    sampler = _Sampler(log_prob, int(n_steps) if record else 0, jit_compile)
    _, grad = sampler.evaluate(q)
    out = sampler.run(q, p, grad, step_size, inverse_mass, int(n_steps), record=record)
    return (out["q"], out["p"], out["path"]) if record else (out["q"], out["p"])


class _TrajectoryProgram(keras.Model):
    """A leapfrog trajectory as one call: {q, p, grad, step_size, inverse_mass, n_steps, refresh, record}
    -> {q, p, grad, log_prob} at the end point, plus with ``max_record`` the positions along the way.

    Run through ``predict_on_batch`` so that Keras compiles it once per sampler on each backend: ``n_steps``
    is an input (a while loop), so jittering the trajectory length does not recompile, and the flags are
    inputs too. ``refresh`` = 1 recomputes grad log pi(q) first (the sampler's first call, with n_steps =
    0, is how it evaluates the starting points); ``record`` = 1 writes the positions into the buffer."""

    def __init__(self, log_prob: LogProb, max_record: int = 0, jit_compile: bool | str = "auto"):
        super().__init__(name="hmc_trajectory")
        self.log_prob_fn = log_prob
        self.max_record = max_record
        self.built = True
        if jit_compile != "auto":
            self.jit_compile = jit_compile

    def call(self, inputs):
        step_size, inverse_mass = inputs["step_size"][0], inputs["inverse_mass"][0]
        n_steps = ops.cast(inputs["n_steps"][0], "int32")
        q, p = inputs["q"], inputs["p"]
        grad = ops.cond(inputs["refresh"][0] > 0, lambda: _grad_log_prob(self.log_prob_fn, q),
                        lambda: inputs["grad"])
        state = (q, p, grad)
        if self.max_record:
            # Positions along the path land in a fixed buffer, row i + 1 after step i (a where on a
            # one-hot row works in every backend's compiled loop, unlike a dynamic slice update), only
            # when recording: the buffer is (L_max + 1) x chains x D, more work than a cheap gradient.
            rows = ops.reshape(ops.arange(self.max_record + 1), (-1, 1, 1))
            recording = inputs["record"][0] > 0
            state = state + (ops.where(rows == 0, q[None], ops.zeros_like(q)[None]),)

        def body(i, state):
            q, p, grad = _leapfrog_step(self.log_prob_fn, *state[:3], step_size, inverse_mass)
            if not self.max_record:
                return q, p, grad
            path = ops.cond(recording, lambda: ops.where(rows == i + 1, q[None], state[3]), lambda: state[3])
            return q, p, grad, path

        state = ops.fori_loop(0, n_steps, body, state)
        out = {"q": state[0], "p": state[1], "grad": state[2], "log_prob": self.log_prob_fn(state[0])}
        if self.max_record:
            out["path"] = state[3]
        return out


class _FunctionProgram(keras.Model):
    """x -> fn(x), compiled like the trajectory (see :func:`compiled`)."""

    def __init__(self, fn: Callable, jit_compile: bool | str = "auto"):
        super().__init__(name="compiled_function")
        self.fn = fn
        self.built = True
        if jit_compile != "auto":
            self.jit_compile = jit_compile

    def call(self, inputs):
        return self.fn(inputs["x"])


def compiled(fn: Callable, jit_compile: bool | str = "auto") -> Callable[[np.ndarray], np.ndarray]:
    """``fn`` (a batch of float32 rows -> tensors, in keras.ops) as a numpy -> numpy function that Keras
    compiles per backend, as the sampler's trajectories are: for evaluating a density or a decoder on
    many points (eager JAX and TensorFlow dispatch op by op). Each new input shape compiles once."""
    program = _FunctionProgram(fn, jit_compile)

    def call(x):
        out = program.predict_on_batch({"x": np.asarray(x, "float32")})
        return np.asarray(out) if not isinstance(out, dict) else {k: np.asarray(v) for k, v in out.items()}

    return call


def log_prob_and_grad(log_prob: LogProb, q) -> tuple[np.ndarray, np.ndarray]:
    """log pi(q) (chains,) and its gradient (chains, D), eagerly, as numpy arrays."""
    q = ops.convert_to_tensor(np.asarray(q, "float32"))
    return (ops.convert_to_numpy(log_prob(q)).astype("float64"),
            ops.convert_to_numpy(_grad_log_prob(log_prob, q)))


# -- step-size adaptation ------------------------------------------------------------------------------
class DualAveraging:
    """Nesterov's dual averaging for the step size (Hoffman & Gelman 2014, Section 3.2.1,
    Algorithm 5). After iteration m with acceptance statistic alpha_m:

        H_m           = (1 - 1/(m + t0)) H_{m-1} + (delta - alpha_m) / (m + t0)
        log eps_m     = mu - sqrt(m)/gamma * H_m,          mu = log(10 eps_0)
        log epsbar_m  = m^-kappa log eps_m + (1 - m^-kappa) log epsbar_{m-1}

    eps_m is used for the next warm-up iteration; epsbar (a weighted geometric mean of the iterates)
    is the step size after warm-up. H_m is the running average of delta - alpha, pushed to 0."""

    def __init__(self, initial_step_size: float, target_accept: float = 0.8, gamma: float = 0.05,
                 t0: float = 10.0, kappa: float = 0.75):
        self.target, self.gamma, self.t0, self.kappa = target_accept, gamma, t0, kappa
        self.mu = math.log(10.0 * initial_step_size)
        self.h_bar = 0.0
        self.log_step_bar = 0.0
        self.m = 0
        self.step_size = initial_step_size

    def update(self, accept_prob: float) -> float:
        """Feed the mean acceptance probability of the last iteration; returns the next step size."""
        self.m += 1
        w = 1.0 / (self.m + self.t0)
        self.h_bar = (1.0 - w) * self.h_bar + w * (self.target - accept_prob)
        log_step = self.mu - math.sqrt(self.m) / self.gamma * self.h_bar
        eta = self.m ** -self.kappa
        self.log_step_bar = eta * log_step + (1.0 - eta) * self.log_step_bar
        self.step_size = math.exp(log_step)
        return self.step_size

    @property
    def final_step_size(self) -> float:
        return math.exp(self.log_step_bar)


# -- the sampler ---------------------------------------------------------------------------------------
@dataclass
class Trajectory:
    """The leapfrog path of one recorded iteration: ``positions`` (L + 1, chains, D), start first and the
    proposal last; ``accepted`` and ``accept_prob`` per chain."""

    iteration: int
    positions: np.ndarray
    accepted: np.ndarray
    accept_prob: np.ndarray

    @property
    def start(self) -> np.ndarray:
        return self.positions[0]

    @property
    def proposal(self) -> np.ndarray:
        return self.positions[-1]


@dataclass
class HMCResult:
    """What :func:`hmc` returns. Arrays over the sampling phase are indexed [iteration, chain, ...].

    ``n_grad_evals`` counts gradient evaluations per chain during sampling (one batched call gives every
    chain its gradient, so a chain's cost is this number whatever the number of chains);
    ``n_grad_evals_warmup`` the same for warm-up (step-size search included)."""

    samples: np.ndarray                 # (n_samples, chains, D)
    log_prob: np.ndarray                # (n_samples, chains)
    accept_prob: np.ndarray             # (n_samples, chains): min(1, exp(-Delta H))
    accepted: np.ndarray                # (n_samples, chains) bool
    n_steps: np.ndarray                 # (n_samples,) leapfrog steps per iteration
    step_size: float
    inverse_mass: np.ndarray            # (D,) diagonal of M^{-1}
    n_grad_evals: int
    n_grad_evals_warmup: int
    warmup_seconds: float
    sampling_seconds: float
    warmup_accept_prob: np.ndarray      # (n_warmup,) mean over chains
    warmup_step_sizes: np.ndarray       # (n_warmup,) step size used at each warm-up iteration
    divergences: int                    # sampling iterations x chains with an energy error > 1000
    trajectories: list[Trajectory] = field(default_factory=list)

    @property
    def acceptance_rate(self) -> float:
        """Mean Metropolis acceptance probability over the sampling phase."""
        return float(np.mean(self.accept_prob))

    def ess(self, split: bool = True) -> np.ndarray:
        """Effective sample size of each coordinate, all chains together."""
        return effective_sample_size(self.samples, split=split)

    def rhat(self) -> np.ndarray:
        """Split R-hat of each coordinate."""
        return potential_scale_reduction(self.samples)


def _kinetic(p: np.ndarray, inverse_mass: np.ndarray) -> np.ndarray:
    """K(p) = 1/2 p^T M^{-1} p per chain (Neal 2011, Section 5.3, diagonal M)."""
    return 0.5 * np.sum(inverse_mass * np.square(p, dtype="float64"), axis=-1)


def _log_accept(log_prob0, p0, log_prob1, p1, inverse_mass) -> np.ndarray:
    """log of the Metropolis ratio exp(H0 - H1), H = -log pi(q) + K(p); NaN (a blown-up trajectory)
    counts as -inf, i.e. rejected."""
    h0 = -log_prob0 + _kinetic(p0, inverse_mass)
    h1 = -log_prob1 + _kinetic(p1, inverse_mass)
    log_ratio = h0 - h1
    return np.where(np.isfinite(log_ratio), log_ratio, -np.inf)


class _Sampler:
    """The compiled trajectory program for one target density, and the count of gradient evaluations."""

    def __init__(self, log_prob: LogProb, max_record: int, jit_compile: bool | str):
        self.program = _TrajectoryProgram(log_prob, max_record=max_record, jit_compile=jit_compile)
        self.grad_evals = 0

    def _call(self, q, p, grad, step_size: float, inverse_mass, n_steps: int, refresh: bool, record: bool) -> dict:
        flag = lambda value: np.full((1,), float(value), "float32")  # noqa: E731
        out = self.program.predict_on_batch({
            "q": q, "p": p, "grad": grad, "step_size": flag(step_size),
            "inverse_mass": np.asarray(inverse_mass, "float32")[None],
            "n_steps": np.full((1,), n_steps, "int32"), "refresh": flag(refresh), "record": flag(record),
        })
        self.grad_evals += n_steps + int(refresh)
        out = {k: np.asarray(v) for k, v in out.items()}
        out["log_prob"] = out["log_prob"].astype("float64")
        return out

    def evaluate(self, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """log pi(q) and its gradient at the starting points."""
        zeros = np.zeros_like(q)
        out = self._call(q, zeros, zeros, 0.0, np.ones(q.shape[-1]), 0, refresh=True, record=False)
        return out["log_prob"], out["grad"]

    def run(self, q, p, grad, step_size: float, inverse_mass: np.ndarray, n_steps: int, record: bool = False) -> dict:
        out = self._call(q, p, grad, step_size, inverse_mass, n_steps, refresh=False, record=record)
        path = out.pop("path", None)
        if record:
            out["path"] = path[: n_steps + 1]
        return out


def _find_reasonable_step_size(sampler: _Sampler, q, log_prob, grad, inverse_mass, rng: np.random.Generator,
                              initial: float = 1.0, max_doublings: int = 60) -> float:
    """Hoffman & Gelman (2014), Algorithm 4: from eps = 1, double (or halve) eps until the acceptance
    ratio of a single leapfrog step crosses 1/2. With a batch of chains the ratio is the median over
    chains of each chain's log ratio."""
    step = initial
    sqrt_mass = 1.0 / np.sqrt(inverse_mass)

    def log_ratio(step):
        p = (rng.standard_normal(q.shape) * sqrt_mass).astype("float32")
        out = sampler.run(q, p, grad, step, inverse_mass, 1)
        return float(np.median(_log_accept(log_prob, p, out["log_prob"], out["p"], inverse_mass)))

    ratio = log_ratio(step)
    direction = 1.0 if ratio > math.log(0.5) else -1.0
    for _ in range(max_doublings):
        if not direction * ratio > -direction * math.log(2.0):
            break
        step *= 2.0 ** direction
        ratio = log_ratio(step)
    return step


def _warmup_windows(n_warmup: int, adapt_mass: bool) -> tuple[int, int]:
    """(start, end) of the window whose draws estimate the mass matrix: like Stan's buffers (Stan Reference
    Manual, "Automatic parameter tuning"), a fast step-size-only stretch first (15%), then the window, then
    a final stretch (25%, longer than Stan's 5%: dual averaging restarts there for the new metric and needs
    some tens of iterations to settle on short warm-ups)."""
    if not adapt_mass or n_warmup < 20:
        return n_warmup, n_warmup
    return int(0.15 * n_warmup), n_warmup - max(1, int(0.25 * n_warmup))


def hmc(log_prob: LogProb, initial, n_samples: int, *, n_warmup: int = 500, n_steps: int = 10,
        jitter: float = 0.0, step_size: float | None = None, target_accept: float = 0.8,
        inverse_mass=None, adapt_step_size: bool = True, adapt_mass: bool = False,
        record: Sequence[int] = (), seed: int = 0, jit_compile: bool | str = "auto") -> HMCResult:
    """Sample ``log_prob`` with HMC on a batch of chains.

    Args:
        log_prob: (chains, D) tensor -> (chains,) log density (unnormalised), in ``keras.ops``; row c
            must depend on q[c] only.
        initial: (chains, D) starting points (one chain: shape (D,) is accepted too).
        n_samples: iterations kept after warm-up.
        n_warmup: warm-up iterations (step size, and with ``adapt_mass`` the diagonal mass matrix, adapt).
        n_steps: leapfrog steps per iteration, L.
        jitter: with j > 0, L is drawn uniformly from {round(L(1 - j)), ..., round(L(1 + j))} (>= 1)
            at each iteration, the same for all chains.
        step_size: initial step size; None: Hoffman & Gelman's Algorithm 4 heuristic finds one. Without
            adaptation it is the step size used throughout.
        target_accept: delta, the mean acceptance probability dual averaging aims at.
        inverse_mass: diagonal of M^{-1}, shape (D,) (default ones).
        adapt_mass: estimate M^{-1} as the regularised variance of a warm-up window's draws.
        record: sampling iterations (0-based) whose leapfrog paths to keep (``HMCResult.trajectories``).
        seed: numpy seed of the momenta and the Metropolis uniforms.
        jit_compile: passed to the Keras programs ("auto": XLA/jit on TensorFlow and JAX, eager on torch).
    """
    rng = np.random.default_rng(seed)
    q = np.asarray(ops.convert_to_numpy(initial) if not isinstance(initial, np.ndarray) else initial, "float32")
    if q.ndim == 1:
        q = q[None]
    chains, dim = q.shape
    inv_mass = np.ones(dim, "float64") if inverse_mass is None else np.asarray(inverse_mass, "float64").reshape(dim)
    low, high = max(1, round(n_steps * (1 - jitter))), max(1, round(n_steps * (1 + jitter)))
    record = sorted(set(int(i) for i in record))
    sampler = _Sampler(log_prob, high if record else 0, jit_compile)

    start = time.perf_counter()
    lp, grad = sampler.evaluate(q)
    if step_size is None:
        step_size = _find_reasonable_step_size(sampler, q, lp, grad, inv_mass, rng)
    adapter = DualAveraging(step_size, target_accept)
    window_start, window_end = _warmup_windows(n_warmup, adapt_mass)
    window = []
    warm_accept, warm_steps = np.zeros(n_warmup), np.zeros(n_warmup)

    def iterate(q, lp, grad, step, record_it: bool = False):
        L = int(rng.integers(low, high + 1))
        p = (rng.standard_normal(q.shape) / np.sqrt(inv_mass)).astype("float32")
        out = sampler.run(q, p, grad, step, inv_mass, L, record=record_it)
        log_alpha = _log_accept(lp, p, out["log_prob"], out["p"], inv_mass)
        accept = np.log(rng.uniform(size=chains)) < log_alpha
        keep = accept[:, None]
        q = np.where(keep, out["q"], q)
        grad = np.where(keep, out["grad"], grad)
        lp = np.where(accept, out["log_prob"], lp)
        return q, lp, grad, L, accept, np.exp(np.minimum(log_alpha, 0.0)), -log_alpha > 1000.0, out.get("path")

    for it in range(n_warmup):
        warm_steps[it] = step_size
        q, lp, grad, _, _, alpha, _, _ = iterate(q, lp, grad, step_size)
        warm_accept[it] = alpha.mean()
        if adapt_step_size:
            step_size = adapter.update(float(alpha.mean()))
        if window_start <= it < window_end:
            window.append(q)
        if it + 1 == window_end and window:
            # Stan's regularised variance estimate (shrunk towards 1e-3 with weight 5/(n + 5)).
            draws = np.concatenate(window).astype("float64")
            n = len(draws)
            inv_mass = (n / (n + 5.0)) * draws.var(axis=0, ddof=1) + 1e-3 * (5.0 / (n + 5.0))
            if adapt_step_size:  # restart dual averaging for the new metric (as Stan does)
                step_size = _find_reasonable_step_size(sampler, q, lp, grad, inv_mass, rng, initial=step_size)
                adapter = DualAveraging(step_size, target_accept)
    if adapt_step_size and n_warmup > 0 and adapter.m > 0:
        step_size = adapter.final_step_size
    grad_evals_warmup = sampler.grad_evals
    warmup_seconds = time.perf_counter() - start

    samples = np.zeros((n_samples, chains, dim), "float32")
    log_probs = np.zeros((n_samples, chains))
    accept_prob = np.zeros((n_samples, chains))
    accepted = np.zeros((n_samples, chains), bool)
    steps = np.zeros(n_samples, int)
    divergent = 0
    trajectories = []
    start = time.perf_counter()
    for it in range(n_samples):
        q, lp, grad, L, accept, alpha, diverged, path = iterate(q, lp, grad, step_size, it in record)
        samples[it], log_probs[it], accept_prob[it], accepted[it], steps[it] = q, lp, alpha, accept, L
        divergent += int(diverged.sum())
        if path is not None:
            trajectories.append(Trajectory(it, path, accept.copy(), alpha.copy()))
    sampling_seconds = time.perf_counter() - start

    return HMCResult(
        samples=samples, log_prob=log_probs, accept_prob=accept_prob, accepted=accepted, n_steps=steps,
        step_size=float(step_size), inverse_mass=inv_mass.astype("float32"),
        n_grad_evals=sampler.grad_evals - grad_evals_warmup, n_grad_evals_warmup=grad_evals_warmup,
        warmup_seconds=warmup_seconds, sampling_seconds=sampling_seconds,
        warmup_accept_prob=warm_accept, warmup_step_sizes=warm_steps, divergences=divergent,
        trajectories=trajectories,
    )


# -- effective sample size (numpy) -------------------------------------------------------------------
def _chains_first_axis(draws) -> np.ndarray:
    """(n_draws,) or (n_draws, chains, *event) -> float64 (n_draws, chains, k) and the event shape."""
    x = np.asarray(draws, "float64")
    if x.ndim == 1:
        x = x[:, None]
    return x.reshape(x.shape[0], x.shape[1], -1), x.shape[2:]


def _autocovariance(x: np.ndarray) -> np.ndarray:
    """Biased autocovariance (1/n) sum_t (x_t - xbar)(x_{t+k} - xbar) along axis 0, for every lag, by the
    FFT (Wiener-Khinchin; zero padding to >= 2n avoids the circular wrap-around)."""
    n = x.shape[0]
    centred = x - x.mean(axis=0)
    size = 1 << (2 * n - 1).bit_length()
    spectrum = np.fft.rfft(centred, n=size, axis=0)
    return np.fft.irfft(spectrum * np.conj(spectrum), n=size, axis=0)[:n] / n


def _split(x: np.ndarray) -> np.ndarray:
    """(n, m, k) -> (n // 2, 2m, k): each chain cut into its first and last halves."""
    half = x.shape[0] // 2
    return np.concatenate([x[:half], x[x.shape[0] - half:]], axis=1)


def potential_scale_reduction(draws, split: bool = True) -> np.ndarray:
    """R-hat = sqrt(var+ / W) per coordinate (Gelman & Rubin 1992; Bayesian Data Analysis 3rd ed., Section
    11.4, split chains as in Vehtari et al. 2021, before their rank normalisation): about 1 when the chains agree,
    above 1.01 a sign that they have not mixed. Needs at least two (split) chains."""
    x, event = _chains_first_axis(draws)
    if split:
        x = _split(x)
    n = x.shape[0]
    within = x.var(axis=0, ddof=1).mean(axis=0)
    var_plus = within * (n - 1.0) / n + x.mean(axis=0).var(axis=0, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        rhat = np.sqrt(var_plus / within)
    return np.where(within > 0, rhat, 1.0).reshape(event)


def integrated_autocorrelation_time(draws, split: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """tau = 1 + 2 sum_{t>=1} rho_t per coordinate and the lag where Geyer's sequence was truncated.

    ``draws``: (n_draws,) or (n_draws, chains, *event). With ``split`` each chain is cut in two halves
    (so a chain whose two halves disagree reads as not mixed; Vehtari et al. 2021). Then, with n draws
    per chain, m chains, W the mean within-chain variance and B/n the variance of the chain means
    (Bayesian Data Analysis 3rd ed., Sections 11.4-11.5):

        var+  = (n - 1)/n W + B/n
        rho_t = 1 - (W - mean_chains autocov_t) / var+

    Geyer's (1992) initial monotone sequence: with P_k = rho_{2k} + rho_{2k+1}, sum the P_k up to the
    first negative one, each replaced by the running minimum (P_k is positive and decreasing for a
    reversible chain); tau = -1 + 2 sum_k P_k (+ rho at the first dropped even lag when positive, as
    Stan does). tau is floored at 1/log10(n m), i.e. ESS <= n m log10(n m) (Stan's cap for antithetic
    chains)."""
    x, event = _chains_first_axis(draws)
    if split:
        x = _split(x)
    n, m, _ = x.shape
    if n < 4:
        raise ValueError(f"need at least 4 draws per (split) chain, got {n}")
    acov = _autocovariance(x)                              # (n, m, k)
    within = acov[0].mean(axis=0) * n / (n - 1.0)           # W: mean of the unbiased chain variances
    var_plus = within * (n - 1.0) / n
    if m > 1:
        var_plus = var_plus + x.mean(axis=0).var(axis=0, ddof=1)
    constant = var_plus <= 0
    var_plus = np.where(constant, 1.0, var_plus)
    rho = 1.0 - (within - acov.mean(axis=1)) / var_plus     # (n, k); rho[0] = 1 up to rounding
    rho[0] = 1.0
    pairs = (n - 2) // 2                                    # lags 0..n-3 as in Stan / ArviZ
    P = rho[0:2 * pairs:2] + rho[1:2 * pairs:2]             # (pairs, k)
    positive = np.cumprod(P > 0, axis=0).astype(bool)       # initial positive sequence
    monotone = np.minimum.accumulate(np.where(positive, P, np.inf), axis=0)
    kept = positive.sum(axis=0)                             # number of pairs kept per coordinate
    tau = -1.0 + 2.0 * np.where(positive, monotone, 0.0).sum(axis=0)
    first_dropped = np.minimum(2 * kept, n - 1)
    extra = rho[first_dropped, np.arange(rho.shape[1])]
    tau = tau + np.where((kept < pairs) & (extra > 0), extra, 0.0)
    tau = np.maximum(tau, 1.0 / math.log10(n * m))
    tau = np.where(constant, 1.0, tau)
    return tau.reshape(event), (2 * kept + 1).reshape(event)


def effective_sample_size(draws, split: bool = True) -> np.ndarray:
    """ESS = (draws x chains) / tau per coordinate (Geyer's initial monotone sequence; see
    :func:`integrated_autocorrelation_time`). ``draws``: (n_draws,) or (n_draws, chains, *event)."""
    x, _ = _chains_first_axis(draws)
    n = (x.shape[0] // 2) * 2 if split else x.shape[0]
    tau, _ = integrated_autocorrelation_time(draws, split)
    return n * x.shape[1] / tau


def monte_carlo_standard_error(draws, split: bool = True) -> np.ndarray:
    """Standard error of the mean of each coordinate: sd / sqrt(ESS)."""
    x, event = _chains_first_axis(draws)
    sd = x.reshape(-1, x.shape[-1]).std(axis=0, ddof=1).reshape(event)
    return sd / np.sqrt(effective_sample_size(draws, split))
