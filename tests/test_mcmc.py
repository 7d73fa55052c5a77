"""kgen.mcmc: the leapfrog integrator's exact properties, the sampler against a known Gaussian, dual
averaging, and the effective sample size against processes whose ESS is known in closed form.

Statistical checks compare an estimate with the truth within 4 Monte-Carlo standard errors, the error
itself estimated from the chains (sd / sqrt(ESS)), so the bound follows the run, not the machine."""

from __future__ import annotations

import math

import numpy as np
import pytest
from keras import ops

from conftest import np_
from kgen import mcmc
from kgen.backend import batch_jacobian

Z = 4.0  # standard errors allowed: a 4-sigma band fails by chance about once in 16,000 checks

# -- targets -------------------------------------------------------------------------------------------
MEAN = np.array([1.0, -2.0])
SCALES = np.array([1.0, 3.0])
RHO = 0.9
COV = np.array([[SCALES[0] ** 2, RHO * SCALES[0] * SCALES[1]], [RHO * SCALES[0] * SCALES[1], SCALES[1] ** 2]])


def gaussian_log_prob(q):
    """log N(q; MEAN, COV) + const for a batch of rows: -1/2 (q - m)^T Sigma^{-1} (q - m)."""
    precision = ops.convert_to_tensor(np.linalg.inv(COV).astype("float32"))
    d = q - ops.convert_to_tensor(MEAN.astype("float32"))
    return -0.5 * ops.sum(d * ops.matmul(d, precision), axis=-1)


def banana_log_prob(q):
    """A curved 2-D density (non-quadratic potential, so the leapfrog map is genuinely non-linear):
    q1 ~ N(0, 1), q2 | q1 ~ N(q1^2, 0.5^2)."""
    return -0.5 * ops.square(q[:, 0]) - 2.0 * ops.square(q[:, 1] - ops.square(q[:, 0]))


def starts(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 2)).astype("float32"), rng.normal(size=(n, 2)).astype("float32")


def energy(log_prob, q, p):
    """H(q, p) = -log pi(q) + |p|^2 / 2 per chain, in float64 on the host."""
    return -np_(log_prob(ops.convert_to_tensor(q))).astype("float64") + 0.5 * np.sum(np.square(p, dtype="float64"), axis=-1)


# -- leapfrog ------------------------------------------------------------------------------------------
def test_leapfrog_is_time_reversible():
    """Negating the momentum and integrating again returns to the start (Neal 2011, Sections 5.2.2-5.2.3), up
    to float32 rounding accumulated over the 2L steps."""
    q0, p0 = starts(16)
    q1, p1 = mcmc.leapfrog(banana_log_prob, q0, p0, 0.05, 30)
    q2, p2 = mcmc.leapfrog(banana_log_prob, q1, -p1, 0.05, 30)
    moved = np.abs(q1 - q0).max()
    assert moved > 0.5  # the trajectory went somewhere
    tolerance = 2 * 30 * np.finfo("float32").eps * 100  # 2L steps, each with O(100) ulp of rounding at |q| ~ 1
    np.testing.assert_allclose(q2, q0, atol=tolerance)
    np.testing.assert_allclose(-p2, p0, atol=tolerance)


def test_leapfrog_preserves_volume():
    """det d(q', p')/d(q, p) = 1 (the map is a composition of shears), at several points of a curved
    density; the Jacobian is exact (autodiff through the gradient steps), so the check is to rounding."""
    q0, p0 = starts(8, seed=1)
    x0 = np.concatenate([q0, p0], axis=1)

    def flow(x):
        q, p = mcmc.leapfrog(banana_log_prob, x[:, :2], x[:, 2:], 0.2, 3, differentiable=True)
        return ops.concatenate([q, p], axis=1)

    jacobian = np_(batch_jacobian(flow, ops.convert_to_tensor(x0)))
    assert jacobian.shape == (8, 4, 4)
    assert np.abs(jacobian - np.eye(4)).max() > 0.1  # not trivially the identity
    np.testing.assert_allclose(np.linalg.det(jacobian.astype("float64")), 1.0, atol=1e-4)


def test_leapfrog_energy_error_is_second_order():
    """Over a fixed trajectory length T = L eps, the leapfrog energy error is O(eps^2) (Neal 2011,
    Section 5.2.3; Hairer, Lubich & Wanner, Geometric Numerical Integration, Chapter IX): halving eps
    divides it by 4, so the log2 ratio of successive errors is 2 + O(eps^2)."""
    q0, p0 = starts(64, seed=2)
    h0 = energy(banana_log_prob, q0, p0)
    errors = []
    for step in (0.04, 0.02, 0.01):
        q, p = mcmc.leapfrog(banana_log_prob, q0, p0, step, round(1.0 / step))
        errors.append(np.mean(np.abs(energy(banana_log_prob, q, p) - h0)))
    orders = np.log2(np.array(errors[:-1]) / np.array(errors[1:]))
    np.testing.assert_allclose(orders, 2.0, atol=0.25)  # a first-order scheme (Euler) would give 1


# -- the sampler ---------------------------------------------------------------------------------------
def moment_checks(draws: np.ndarray) -> dict[str, tuple[float, float, float]]:
    """For f in {q1, q2, (q1-m1)^2, (q2-m2)^2, (q1-m1)(q2-m2)}: (estimate, truth, Monte-Carlo standard
    error of the estimate = sd(f) / sqrt(ESS(f)), ESS over all chains)."""
    d = draws - MEAN
    functions = {
        "mean q1": (draws[..., 0], MEAN[0]), "mean q2": (draws[..., 1], MEAN[1]),
        "var q1": (d[..., 0] ** 2, COV[0, 0]), "var q2": (d[..., 1] ** 2, COV[1, 1]),
        "cov q1 q2": (d[..., 0] * d[..., 1], COV[0, 1]),
    }
    return {name: (f.mean(), truth, float(mcmc.monte_carlo_standard_error(f))) for name, (f, truth) in functions.items()}


@pytest.fixture(scope="module")
def gaussian_run():
    return mcmc.hmc(gaussian_log_prob, np.zeros((32, 2), "float32"), 150, n_warmup=150, n_steps=10, jitter=0.5,
                    target_accept=0.8, record=[0, 3], seed=0)


def test_hmc_recovers_the_moments_of_a_correlated_gaussian(gaussian_run):
    result = gaussian_run
    assert result.samples.shape == (150, 32, 2) and np.isfinite(result.samples).all()
    for name, (estimate, truth, mcse) in moment_checks(result.samples).items():
        assert abs(estimate - truth) < Z * mcse, f"{name}: {estimate:.4f} vs {truth:.4f} (MCSE {mcse:.4f})"
    # HMC mixes well here: each coordinate's ESS is a sizeable part of the 4,800 draws, the chains agree.
    assert (result.ess() > 1000).all()
    assert (result.rhat() < 1.01).all()


def test_hmc_bookkeeping(gaussian_run):
    result = gaussian_run
    # Every sampling iteration costs its L gradient evaluations per chain.
    assert result.n_grad_evals == result.n_steps.sum()
    assert set(np.unique(result.n_steps)) <= set(range(5, 16)) and len(np.unique(result.n_steps)) > 3  # jitter
    # Recorded iterations: the path starts at the previous state and ends at the proposal, and the
    # state after the iteration is the proposal where accepted, the previous state where not.
    for trajectory in result.trajectories:
        it = trajectory.iteration
        assert trajectory.positions.shape == (result.n_steps[it] + 1, 32, 2)
        if it > 0:
            np.testing.assert_allclose(trajectory.start, result.samples[it - 1])
        expected = np.where(trajectory.accepted[:, None], trajectory.proposal, trajectory.start)
        np.testing.assert_allclose(result.samples[it], expected)
    assert [t.iteration for t in result.trajectories] == [0, 3]


def test_hmc_acceptance_follows_the_target():
    """Dual averaging drives the warm-up's mean acceptance to delta; the final step size (a geometric mean
    of the iterates) accepts at least about as often (acceptance is concave in log eps near delta, so by
    Jensen alpha(epsbar) >= mean alpha(eps_t)). A higher target gives a smaller step and more acceptance."""
    runs = {}
    for target in (0.6, 0.9):
        result = mcmc.hmc(gaussian_log_prob, np.zeros((32, 2), "float32"), 60, n_warmup=150, n_steps=10,
                          jitter=0.5, target_accept=target, seed=1)
        warmup = result.warmup_accept_prob[75:]
        mcse_warmup = float(mcmc.monte_carlo_standard_error(warmup))
        assert abs(warmup.mean() - target) < Z * mcse_warmup + 0.02  # + the O(1/sqrt(m)) dual-averaging residual
        mcse = float(mcmc.monte_carlo_standard_error(result.accept_prob))
        assert result.acceptance_rate > target - Z * mcse
        runs[target] = result
    assert runs[0.6].step_size > runs[0.9].step_size
    assert runs[0.6].acceptance_rate < runs[0.9].acceptance_rate


def test_dual_averaging_finds_the_step_of_a_known_acceptance_curve():
    """With alpha(eps) = exp(-eps^2) the step giving acceptance delta is sqrt(-log delta)."""
    adapter = mcmc.DualAveraging(initial_step_size=1.0, target_accept=0.8)
    step = adapter.step_size
    for _ in range(3000):
        step = adapter.update(math.exp(-step**2))
    np.testing.assert_allclose(adapter.final_step_size, math.sqrt(-math.log(0.8)), rtol=0.01)


def test_hmc_with_a_mass_matrix_adapts_it_to_the_variances():
    result = mcmc.hmc(gaussian_log_prob, np.zeros((32, 2), "float32"), 80, n_warmup=200, n_steps=10,
                      jitter=0.5, adapt_mass=True, seed=2)
    # M^{-1} estimates the marginal variances (1, 9) from the window's 120 x 32 correlated draws.
    ratio = result.inverse_mass / np.diag(COV)
    assert ((ratio > 0.6) & (ratio < 1.6)).all(), result.inverse_mass
    for name, (estimate, truth, mcse) in moment_checks(result.samples).items():
        assert abs(estimate - truth) < Z * mcse, f"{name}: {estimate:.4f} vs {truth:.4f} (MCSE {mcse:.4f})"


def test_hmc_agrees_with_numpyro(gaussian_run):
    """An outside implementation on the same target: NumPyro's HMC (fixed 10 steps, dual averaging to 0.8,
    identity mass; ours jitters L around 10). The two samplers' moments agree within their joint Monte-Carlo error."""
    numpyro = pytest.importorskip("numpyro")
    import jax
    import jax.numpy as jnp
    from numpyro.infer import HMC, MCMC

    precision = jnp.asarray(np.linalg.inv(COV))

    def potential(q):
        d = q - jnp.asarray(MEAN)
        return 0.5 * d @ precision @ d

    kernel = HMC(potential_fn=potential, num_steps=10, trajectory_length=None, adapt_step_size=True,
                 adapt_mass_matrix=False, target_accept_prob=0.8)
    sampler = MCMC(kernel, num_warmup=300, num_samples=2000, num_chains=1, progress_bar=False)
    sampler.run(jax.random.PRNGKey(0), init_params=jnp.zeros(2))
    theirs = np.asarray(sampler.get_samples())[:, None, :]  # (draws, 1 chain, 2)
    ours = gaussian_run.samples
    checks_theirs, checks_ours = moment_checks(theirs), moment_checks(ours)
    for name in checks_ours:
        a, _, se_a = checks_ours[name]
        b, _, se_b = checks_theirs[name]
        assert abs(a - b) < Z * math.hypot(se_a, se_b), f"{name}: kgen {a:.4f} vs numpyro {b:.4f}"
    assert numpyro.__version__


# -- effective sample size -------------------------------------------------------------------------------
def ar1(n: int, phi: float, chains: int = 1, seed: int = 0) -> np.ndarray:
    """x_t = phi x_{t-1} + sqrt(1 - phi^2) e_t from the stationary N(0, 1): rho_t = phi^t, so
    tau = 1 + 2 sum_t phi^t = (1 + phi)/(1 - phi) and ESS = n (1 - phi)/(1 + phi)."""
    rng = np.random.default_rng(seed)
    noise = rng.normal(size=(n, chains))
    x = np.empty((n, chains))
    x[0] = noise[0]
    scale = math.sqrt(1 - phi**2)
    for t in range(1, n):
        x[t] = phi * x[t - 1] + scale * noise[t]
    return x


def ess_tolerance(draws: np.ndarray) -> float:
    """Relative standard deviation of a windowed autocorrelation-time estimate, sqrt(2 (2M + 1) / N) for a
    window of M lags and N draws (Madras & Sokal 1988, J. Stat. Phys. 50; Sokal 1997, "Monte Carlo methods in
    statistical mechanics"), with M the lag where Geyer's sequence stopped: Z of them."""
    _, window = mcmc.integrated_autocorrelation_time(draws)
    return Z * math.sqrt(2 * (2 * float(window) + 1) / draws.size)


@pytest.mark.parametrize("phi", [0.0, 0.5, 0.9, -0.3])
def test_ess_of_an_ar1_process(phi):
    draws = ar1(20_000, phi, chains=4, seed=int(10 * phi) + 10)
    expected = draws.size * (1 - phi) / (1 + phi)
    ess = float(mcmc.effective_sample_size(draws[:, :, None])[0])
    assert abs(ess / expected - 1) < ess_tolerance(draws), (ess, expected)


def test_ess_of_one_iid_chain():
    draws = np.random.default_rng(5).normal(size=20_000)
    ess = float(mcmc.effective_sample_size(draws))
    assert abs(ess / draws.size - 1) < ess_tolerance(draws)


def test_ess_and_rhat_see_chains_that_do_not_mix():
    """Four i.i.d. chains around different centres: each chain alone looks perfect, but together they
    estimate the mean badly; the between-chain variance makes the ESS collapse and R-hat exceed 1."""
    rng = np.random.default_rng(6)
    draws = rng.normal(size=(2000, 4)) + np.array([-3.0, -1.0, 1.0, 3.0])
    assert mcmc.effective_sample_size(draws[:, :1]) > 1500
    assert mcmc.effective_sample_size(draws) < 0.01 * draws.size
    assert mcmc.potential_scale_reduction(draws) > 2.0
    # Agreeing chains: R-hat - 1 is O(1/n) (here n = 1000 draws per split chain, 8 split chains).
    assert abs(mcmc.potential_scale_reduction(rng.normal(size=(2000, 4))) - 1.0) < 0.01


def test_monte_carlo_standard_error_of_ar1_mean():
    """sd(mean) of an AR(1) chain = sqrt(tau / n): the MCSE estimate matches it, per coordinate shape."""
    draws = ar1(20_000, 0.5, chains=2, seed=7)[:, :, None].repeat(3, axis=2)
    mcse = mcmc.monte_carlo_standard_error(draws)
    assert mcse.shape == (3,)
    np.testing.assert_allclose(mcse, math.sqrt(3.0 / draws[..., 0].size), rtol=ess_tolerance(draws[..., 0]))
