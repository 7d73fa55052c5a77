"""Mixed precision (``--precision``): float32 variables and 16-bit compute, float32 losses; quality
kept (a bf16 VAE's bound within 1 nat of float32's); mixed_float16's per-phase loss scaling skips an
overflowing step and recovers; input-gradient penalties stay finite; resume keeps the precision.
(Exports of mixed runs are checked with the other families in tests/test_export.py.)"""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

from conftest import digit_like_images, invoke, np_
from kgen.backend.precision import MIXED, loss_scale, resolve
from kgen.config import TrainConfig
from kgen.metrics.likelihood import importance_sampling
from kgen.runs import load_model
from kgen.train import build_model

# Both mixed policies on every backend: bfloat16 and float16 arithmetic are emulated where the CPU
# has no 16-bit units, so these tests check the numerics kgen controls, not one CPU's speed.


def images(n: int, seed: int = 0) -> np.ndarray:
    x, _ = digit_like_images(n, seed=seed)
    return (x[..., None] / 255.0).astype("float32")


def built(model: str, precision: str, **options):
    config = TrainConfig(model=model, precision=precision, seed=0, jit=None, model_options=options)
    data_range = "symmetric" if model in ("gan", "wgan_gp") else "unit"
    return build_model(config, (28, 28, 1), data_range)


def phase_variables(model, phase) -> list[np.ndarray]:
    return [np_(v.value).copy() for v in phase.variables]


@pytest.mark.parametrize("precision", MIXED)
@pytest.mark.parametrize("name, options", [("vae", {"hidden": 16, "latent_dim": 4}),
                                           ("gan", {"width": 8, "latent_dim": 4}),
                                           ("contractive_ae", {"latent_dim": 8})])
def test_variables_are_float32_layers_compute_in_16_bits_and_losses_in_float32(name, options, precision):
    model = built(name, precision, **options)
    assert model.dtype_policy.name == precision
    assert {v.dtype for v in model.trainable_variables} == {"float32"}
    sixteen = "bfloat16" if precision == "mixed_bfloat16" else "float16"
    assert sixteen in {layer.compute_dtype for layer in model._flatten_layers() if layer.weights}
    x = images(8) * (2 if name == "gan" else 1) - (1 if name == "gan" else 0)
    for phase in model.phases:
        loss, metrics = phase.loss((x, None), False)
        assert keras.backend.standardize_dtype(loss.dtype) == "float32", phase.name
        assert all(keras.backend.standardize_dtype(keras.ops.convert_to_tensor(v).dtype) == "float32"
                   for v in metrics.values()), phase.name
    # mixed_float16 scales each phase's loss with its own optimizer; bfloat16 has float32's range
    scales = [loss_scale(model._optimizer_of(phase)) for phase in model.phases]
    assert all(s is not None for s in scales) if precision == "mixed_float16" else all(s is None for s in scales)
    if precision == "mixed_float16" and len(model.phases) > 1:
        assert len({id(s) for s in scales}) == len(scales)  # one dynamic scale per phase


def test_a_bfloat16_vae_bounds_the_likelihood_within_one_nat_of_float32():
    """Same seed, data and 60 steps in float32 and in mixed_bfloat16; both models' -ELBO on held-out
    binarized images with the same importance noise (kgen.metrics.likelihood: eps from numpy), each
    computed in its own precision. The issue's guard: within 1 nat per image (of about 200)."""
    x = (images(600) > 0.5).astype("float32")
    test = (images(200, seed=1) > 0.5).astype("float32")
    bounds = {}
    for precision in ("float32", "mixed_bfloat16"):
        keras.utils.set_random_seed(0)
        model = built("vae", precision, hidden=64, latent_dim=8)
        model.fit(x, batch_size=20, epochs=2, shuffle=False, verbose=0)  # 2 x 30 steps
        values = importance_sampling(model, test, k=8, seed=0)
        bounds[precision] = -float(np.mean(values["elbo"]))
        assert np.isfinite(values["log_likelihood"]).all()
    start = importance_sampling(built("vae", "float32", hidden=64, latent_dim=8), test, k=8, seed=0)
    assert -np.mean(start["elbo"]) - bounds["float32"] > 20, "the models did not train: the check would be empty"
    assert abs(bounds["mixed_bfloat16"] - bounds["float32"]) < 1.0, bounds


def test_a_float16_overflow_skips_that_phase_step_and_the_scale_recovers():
    """A discriminator loss scale of 2^40 overflows float16 (max 65504) in the backward pass: that step
    leaves the discriminator's weights and optimizer untouched and halves its scale, while the
    generator (its own scale) steps as usual. Training goes on; once the scale is small enough the
    discriminator steps again, everything finite."""
    model = built("gan", "mixed_float16", width=8, latent_dim=4)
    x = images(16) * 2 - 1
    d_phase, g_phase = model.phases
    d_opt, g_opt = model._optimizer_of(d_phase), model._optimizer_of(g_phase)
    d_opt.dynamic_scale.assign(2.0**40)
    d_before, g_before = phase_variables(model, d_phase), phase_variables(model, g_phase)
    g_scale = float(np_(g_opt.dynamic_scale))
    model.fit(x, batch_size=16, epochs=1, verbose=0)  # one step
    assert all(np.array_equal(a, b) for a, b in zip(d_before, phase_variables(model, d_phase)))
    assert int(np_(d_opt.inner_optimizer.iterations)) == 0  # the inner (Adam) optimizer never stepped
    assert float(np_(d_opt.dynamic_scale)) == 2.0**39
    assert any(not np.array_equal(a, b) for a, b in zip(g_before, phase_variables(model, g_phase)))
    assert float(np_(g_opt.dynamic_scale)) == g_scale
    # Recovery: 2^39 halves to a scale float16 can carry within a few dozen steps.
    for _ in range(40):
        model.fit(x, batch_size=16, epochs=1, verbose=0)
        if int(np_(d_opt.inner_optimizer.iterations)) > 0:
            break
    assert int(np_(d_opt.inner_optimizer.iterations)) > 0, float(np_(d_opt.dynamic_scale))
    assert any(not np.array_equal(a, b) for a, b in zip(d_before, phase_variables(model, d_phase)))
    assert all(np.isfinite(np_(v.value)).all() for v in model.variables)


@pytest.mark.parametrize("precision", MIXED)
@pytest.mark.parametrize("name, options, penalty", [
    ("wgan_gp", {"width": 8, "latent_dim": 4, "n_critic": 1}, "gradient_penalty"),
    ("contractive_ae", {"latent_dim": 8}, "contractive_penalty"),
])
def test_input_gradient_penalties_stay_finite_and_positive(name, options, penalty, precision):
    """The penalties differentiate the network with respect to its input (twice, for the weight
    update); in 16-bit compute their gradients must stay finite."""
    model = built(name, precision, **options)
    x = images(32) * (2 if name == "wgan_gp" else 1) - (1 if name == "wgan_gp" else 0)
    before = [np_(v.value).copy() for v in model.trainable_variables]
    logs = model.fit(x, batch_size=16, epochs=2, verbose=0).history
    assert penalty in logs, sorted(logs)
    assert all(np.isfinite(v) and v > 0 for v in logs[penalty]), logs[penalty]
    after = [np_(v.value) for v in model.trainable_variables]
    assert all(np.isfinite(a).all() for a in after)
    assert any(not np.array_equal(a, b) for a, b in zip(before, after))


@pytest.mark.parametrize("precision", MIXED)
def test_the_contractive_closed_form_trains_and_agrees_with_autodiff_in_16_bits(precision):
    """Rifai et al.'s eq. 5 reads W from the encoder's Dense layer, which a mixed policy follows with a
    float32 cast layer; in 16-bit compute it must still equal the autodiff Jacobian norm (to 16-bit round-off)."""
    model = built("contractive_ae", precision, arch="shallow", latent_dim=8, jacobian="closed-form")
    x = images(16)
    np.testing.assert_allclose(np_(model.jacobian_norm_closed_form(x)), np_(model.jacobian_norm(x)),
                               rtol=5e-2 if precision == "mixed_bfloat16" else 5e-3)
    logs = model.fit(x, batch_size=8, epochs=1, verbose=0).history
    assert np.isfinite(logs["contractive_penalty"]).all() and logs["contractive_penalty"][0] > 0


def test_auto_is_float32_on_a_cpu_and_says_why():
    precision, reason = resolve("auto")
    if keras.backend.backend() in ("tensorflow", "jax", "torch") and "GPU" not in reason and "TPU" not in reason:
        assert precision == "float32" and reason.startswith("auto: a CPU")
    assert resolve("mixed_float16") == ("mixed_float16", "--precision")


def test_a_resumed_run_keeps_its_precision(idx_folder, tmp_path):
    """mixed_float16: the policy and each phase's loss-scaling optimizer come back (bfloat16 reloads
    through the same path without the scales)."""
    precision, run = "mixed_float16", tmp_path / "run"
    args = ["--dataset", idx_folder, "--steps-per-epoch", 2, "--validation-steps", 1, "--batch-size", 16]
    result = invoke("train", "vae", "--hidden", 16, "--epochs", 1, "--precision", precision, "--run-dir", run, *args)
    assert result.exit_code == 0, result.output
    result = invoke("train", "--resume", run, "--epochs", 2)
    assert result.exit_code == 0, result.output
    config = json.loads((run / "config.json").read_text())
    assert config["precision"] == precision
    assert (run / "checkpoints" / "epoch-0002.weights.h5").exists()  # the resumed epoch was trained
    model = load_model(run)
    assert model.dtype_policy.name == precision
    assert {v.dtype for v in model.trainable_variables} == {"float32"}
