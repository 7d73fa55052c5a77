"""AE and VAE: the math of their losses, training on mock TFDS data, serialization."""

from __future__ import annotations

import json
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow_datasets as tfds
from scipy import stats

from conftest import np_, OTHER_BACKEND, ROOT
from kgen.data import load_dataset, pipeline
from kgen.models import AE, VAE, losses


# -- the math ---------------------------------------------------------------------
def test_bernoulli_nll_is_binary_cross_entropy():
    rng = np.random.default_rng(0)
    x = rng.random((3, 5)).astype("float32")
    logits = rng.normal(scale=4, size=(3, 5)).astype("float32")
    p = 1 / (1 + np.exp(-logits.astype("float64")))
    expected = -(x * np.log(p) + (1 - x) * np.log(1 - p)).sum(axis=1)
    np.testing.assert_allclose(np_(losses.bernoulli_nll(x, logits)), expected, rtol=1e-5)
    # saturated logits stay finite: -log sigmoid(-80) = 80, -log sigmoid(80) = e^-80 ~ 0
    extreme = np_(losses.bernoulli_nll(np.array([[1.0, 0.0]], "float32"), np.array([[-80.0, -80.0]], "float32")))
    np.testing.assert_allclose(extreme, [80.0], rtol=1e-6)


def test_gaussian_nll_matches_scipy():
    rng = np.random.default_rng(1)
    x, mean = rng.normal(size=(2, 2, 3, 4)).astype("float32")
    log_sigma = np.float32(-0.7)
    expected = -stats.norm.logpdf(x, mean, np.exp(log_sigma)).reshape(2, -1).sum(axis=1)
    np.testing.assert_allclose(np_(losses.gaussian_nll(x, mean, log_sigma)), expected, rtol=1e-5)


def test_closed_form_kl_matches_monte_carlo():
    rng = np.random.default_rng(2)
    mean = np.array([[0.5, -1.0, 2.0]], "float32")
    log_var = np.array([[-0.5, 0.3, -1.2]], "float32")
    z = mean + np.exp(0.5 * log_var) * rng.normal(size=(400_000, 3))
    log_q = stats.norm.logpdf(z, mean, np.exp(0.5 * log_var)).sum(axis=1)
    log_p = stats.norm.logpdf(z).sum(axis=1)
    monte_carlo = np.mean(log_q - log_p)
    assert float(np_(losses.gaussian_kl(mean, log_var))[0]) == pytest.approx(monte_carlo, rel=1e-2)


def test_vae_loss_is_reconstruction_plus_beta_kl():
    model = VAE((28, 28, 1), seed=0, beta=4.0)
    x = (np.random.default_rng(0).random((8, 28, 28, 1)) > 0.5).astype("float32")
    loss, metrics = model.reconstruction_loss((x, None), False)
    assert float(np_(loss)) == pytest.approx(
        float(np_(metrics["reconstruction_loss"])) + 4.0 * float(np_(metrics["kl_loss"])), rel=1e-5
    )


# -- training on mock TFDS data ---------------------------------------------------------
CASES = [
    ("ae", "mnist", {"arch": "dense"}),
    ("ae", "cifar10", {"arch": "conv"}),
    ("vae", "mnist", {"arch": "conv"}),
    ("vae", "cifar10", {"arch": "dense", "decoder": "gaussian"}),
]


@pytest.mark.parametrize("name,dataset,options", CASES, ids=[f"{c[0]}-{c[1]}-{c[2]['arch']}" for c in CASES])
def test_model_trains_on_mock_tfds_and_loss_falls(name, dataset, options):
    cls = {"ae": AE, "vae": VAE}[name]
    with tfds.testing.mock_data(num_examples=64):
        data = load_dataset(dataset, verbose=False)
        batches = list(pipeline(data.train, 32, "unit").take(2))
    x = np.concatenate([np_(b[0]) for b in batches])
    assert x.shape[1:] == data.shape == {"mnist": (28, 28, 1), "cifar10": (32, 32, 3)}[dataset]
    keras.utils.set_random_seed(0)
    model = cls(data.shape, seed=0, **options)
    model.compile(learning_rate=3e-3)
    before = model.evaluate(x, batch_size=32, verbose=0, return_dict=True)["loss"]
    model.fit(x, batch_size=32, epochs=8, verbose=0)
    after = model.evaluate(x, batch_size=32, verbose=0, return_dict=True)["loss"]
    assert after < before
    assert np_(model.reconstruct(x[:3])).shape == x[:3].shape
    if name == "vae":
        mean, log_var = model.encode(x[:3])
        assert np_(mean).shape == np_(log_var).shape == (3, model.latent_dim)
        assert np_(model.sample(5, seed=1)).shape == (5, *data.shape)
        np.testing.assert_allclose(np_(model.sample(5, seed=1)), np_(model.sample(5, seed=1)))


def test_ae_loss_follows_the_data():
    assert AE((8,), latent_dim=4, data_range="unit").loss_kind == "bce"
    assert AE((8,), latent_dim=4, data_range="real").loss_kind == "mse"
    assert AE((8,), latent_dim=4, data_range="symmetric").loss_kind == "mse"
    with pytest.raises(ValueError, match="bce needs data"):
        AE((8,), latent_dim=4, data_range="real", loss="bce")
    with pytest.raises(ValueError, match="Bernoulli decoder"):
        VAE((8,), data_range="real")
    with pytest.raises(ValueError, match="divisible by 4"):
        AE((30, 30, 1), arch="conv")


# -- serialization -----------------------------------------------------------------
def test_config_round_trip():
    model = VAE((32, 32, 3), seed=3, arch="conv", latent_dim=5, beta=2.0, decoder="gaussian")
    clone = VAE.from_config(model.get_config())
    assert clone.get_config() == model.get_config()
    assert len(clone.weights) == len(model.weights)


RELOAD = """
import json, sys, numpy as np, keras
import kgen.models
from keras import ops
model = keras.models.load_model(sys.argv[1], compile=False)
x = np.load(sys.argv[2])
z = np.load(sys.argv[3])
out = {"reconstruct": ops.convert_to_numpy(model.reconstruct(x)).tolist(),
       "decode": ops.convert_to_numpy(model.decode(z)).tolist()}
print(json.dumps(out))
"""


@pytest.mark.parametrize("cls,options", [(VAE, {"arch": "conv"}), (AE, {"arch": "dense", "latent_dim": 4})])
def test_keras_file_reloads_under_another_backend_with_identical_outputs(tmp_path, cls, options):
    model = cls((28, 28, 1), seed=0, **options)
    model.compile()
    x = np.random.default_rng(0).random((4, 28, 28, 1)).astype("float32")
    model.fit(x, batch_size=4, epochs=1, verbose=0)
    z = np.random.default_rng(1).normal(size=(3, model.latent_dim)).astype("float32")
    model.save(tmp_path / "m.keras")
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "z.npy", z)
    result = subprocess.run(
        [sys.executable, "-c", RELOAD, str(tmp_path / "m.keras"), str(tmp_path / "x.npy"), str(tmp_path / "z.npy")],
        capture_output=True, text=True, cwd=ROOT, env={**__import__("os").environ, "KERAS_BACKEND": OTHER_BACKEND},
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    other = json.loads(result.stdout.strip().splitlines()[-1])
    np.testing.assert_allclose(np.array(other["reconstruct"]), np_(model.reconstruct(x)), atol=1e-5)
    np.testing.assert_allclose(np.array(other["decode"]), np_(model.decode(z)), atol=1e-5)
