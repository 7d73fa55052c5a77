"""kgen.demos.latent_hmc: the closed-form posterior, the latent densities, and the demo end to end (fast)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from keras import ops

from conftest import np_
from kgen import mcmc
from kgen.demos import latent_hmc
from kgen.models.ae import AE


@pytest.mark.parametrize("dim", [2, 5])
def test_log_posterior_is_the_model_up_to_a_constant(dim):
    """The simplified log posterior (likelihood through ybar only) differs from the unsimplified sum of
    N(y_n; mu_y, sigma_y^2) and N(theta_i; 0, 1) log densities by the same constant at every theta."""
    posterior = latent_hmc.make_posterior(dim, seed=3)
    theta = np.random.default_rng(0).normal(size=(16, dim)).astype("float32")
    mu = np_(posterior.mu_y(ops.convert_to_tensor(theta)))
    # mu_y = theta_1 + theta_2^2 + theta_3 + theta_4^2 + ... (1-based parity)
    expected = sum(theta[:, i] if i % 2 == 0 else theta[:, i] ** 2 for i in range(dim))
    np.testing.assert_allclose(mu, expected, rtol=1e-5, atol=1e-5)
    ours = np_(posterior.log_prob(ops.convert_to_tensor(theta))).astype("float64")
    full = posterior.log_prob_numpy(theta)
    offset = full - ours
    assert np.ptp(ours) > 10  # the test points differ in density
    np.testing.assert_allclose(offset, offset[0], atol=1e-5 * np.abs(full).max())


@pytest.mark.parametrize("dim", [2, 5])
def test_log_posterior_gradient_matches_finite_differences(dim):
    """The autodiff gradient the sampler uses (kgen.backend.input_gradient, float32) against central
    differences of the unsimplified float64 log density, and against the closed form."""
    posterior = latent_hmc.make_posterior(dim, seed=4)
    theta = np.random.default_rng(1).normal(size=(8, dim))
    _, grad = mcmc.log_prob_and_grad(posterior.log_prob, theta.astype("float32"))
    h = 1e-6
    numeric = np.stack([(posterior.log_prob_numpy(theta + h * e) - posterior.log_prob_numpy(theta - h * e)) / (2 * h)
                        for e in np.eye(dim)], axis=-1)
    scale = np.abs(numeric).max()
    np.testing.assert_allclose(grad, numeric, atol=1e-5 * scale)  # float32 rounding of O(scale) terms
    np.testing.assert_allclose(posterior.grad_numpy(theta), numeric, atol=1e-6 * scale)


def untrained_latent_map(dim: int) -> latent_hmc.LatentMap:
    model = AE(input_shape=(dim,), latent_dim=2, hidden=16, data_range="real", seed=0)
    return latent_hmc.LatentMap(model, np.linspace(-1, 1, dim).astype("float32"), np.linspace(0.5, 2, dim).astype("float32"),
                                np.array([0.3, -0.2], "float32"), np.array([1.5, 0.7], "float32"))


def test_latent_densities():
    """pullback: log p(g(z)) + 1/2 log det(J^T J), with J checked by finite differences of the decoder (a
    ReLU network is affine between kinks, so the differences are exact up to rounding); prior: log p(g(z))
    plus the Gaussian on the codes."""
    dim = 4
    posterior = latent_hmc.make_posterior(dim)
    latent = untrained_latent_map(dim)
    z = np.random.default_rng(2).normal(size=(6, 2)).astype("float32")
    # compiled (mcmc.compiled): op-by-op JAX would spend seconds dispatching the Jacobian's many small ops
    base = mcmc.compiled(lambda z: posterior.log_prob(latent.decode(z)))(z)

    h = 1e-3
    columns = [(latent.decode_numpy(z + h * e) - latent.decode_numpy(z - h * e)) / (2 * h) for e in np.eye(2, dtype="float32")]
    jacobian = np.stack(columns, axis=-1).astype("float64")                      # (6, dim, 2)
    log_volume = 0.5 * np.log(np.linalg.det(np.einsum("bdi,bdj->bij", jacobian, jacobian)))
    pullback = mcmc.compiled(latent_hmc.latent_log_prob(posterior, latent, "pullback"))(z)
    np.testing.assert_allclose(pullback - base, log_volume, atol=2e-3)

    prior = mcmc.compiled(latent_hmc.latent_log_prob(posterior, latent, "prior"))(z)
    expected = base - 0.5 * np.sum(((z - latent.code_mean) / latent.code_sd) ** 2, axis=-1)
    np.testing.assert_allclose(prior, expected, rtol=1e-5, atol=1e-4)

    with pytest.raises(ValueError, match="density"):
        latent_hmc.latent_log_prob(posterior, latent, "volume")


def finite_numbers(value, path="") -> list[str]:
    """Paths of the non-finite numbers in a JSON tree."""
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in finite_numbers(v, f"{path}.{k}")]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in finite_numbers(v, f"{path}[{i}]")]
    if isinstance(value, float) and not math.isfinite(value):
        return [path]
    return []


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("latent_hmc")
    return out, latent_hmc.run(3, out, fast=True, seed=0, densities=("pullback",))


def test_demo_writes_figures_and_numbers(demo):
    out, summary = demo
    for name in latent_hmc.FIGURES:
        data = (out / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000, name  # a PNG with something drawn
        from PIL import Image

        with Image.open(out / name) as image:
            image.verify()
    on_disk = json.loads((out / "latent_hmc.json").read_text())
    assert on_disk["dim"] == 3 and on_disk["density"] == "pullback" and on_disk["fast"] is True
    for key in ("theta_hmc", "latent_hmc", "reference", "autoencoder", "ybar", "mu_y_likelihood_sd"):
        assert key in on_disk, key
    for sampler in ("theta_hmc", "latent_hmc"):
        numbers = on_disk[sampler]
        for key in ("ess_theta", "ess_mu_y", "ess_per_grad_min", "ess_per_second_min", "mean_theta", "var_theta",
                    "mean_error_sd_max", "var_ratio_theta", "grad_evals", "sampling_seconds", "acceptance_rate", "step_size"):
            assert key in numbers, (sampler, key)
        assert len(numbers["mean_theta"]) == len(numbers["ess_theta"]) == 3
        assert 0 < numbers["acceptance_rate"] <= 1 and numbers["grad_evals"] > 0 and numbers["ess_mu_y"] > 0
    assert not finite_numbers(on_disk)
    assert summary["latent_hmc"] == on_disk["latent_hmc"]


def test_latent_draws_decode_onto_the_posterior_shell(demo):
    """The likelihood depends on theta only through mu_y, with width sigma_y / sqrt(N): the posterior of
    mu_y(theta) sits within about that of ybar (the prior moves its centre by a small fraction of it). The
    decoded latent draws must show it: their mu_y centred on ybar within one likelihood sd, and spread like
    it (not collapsed, and far narrower than under the prior, where mu_y has sd ~ 1.7 for D = 3)."""
    out, summary = demo
    posterior = latent_hmc.make_posterior(3, seed=0)
    width = math.sqrt(posterior.sigma_y2 / posterior.n)
    assert summary["mu_y_likelihood_sd"] == pytest.approx(width)
    decoded = np.load(out / "latent_hmc_draws.npz")["decoded_pullback"]
    assert decoded.shape[1:] == (8, 3) and np.isfinite(decoded).all()
    mu = posterior.mu_y_numpy(decoded)
    assert abs(mu.mean() - posterior.ybar) < width
    assert 0.25 * width < mu.std() < 2 * width


def test_the_demo_command_refuses_bad_input_in_one_line(tmp_path):
    from conftest import invoke

    result = invoke("demo", "latent-hmc", "--dim", 1, "--out", tmp_path / "out")
    assert result.exit_code == 2 and result.output.strip() == "kgen: error: --dim must be >= 2, got 1"
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "mine.txt").write_text("keep me")
    result = invoke("demo", "latent-hmc", "--out", tmp_path / "taken")
    assert result.exit_code == 2 and "not empty" in result.output
    assert (tmp_path / "taken" / "mine.txt").read_text() == "keep me" and not (tmp_path / "out").exists()
