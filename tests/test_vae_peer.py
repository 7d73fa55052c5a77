"""The VAE peer benchmark's weight transfer (benchmarks/vae_peer.py): torch networks -> a kgen VAE.

The benchmark trains pythae's VAE on torch rebuilds of kgen's dense networks and scores it with kgen's
evaluator after copying the nn.Linear weights into kgen's Dense layers. These tests need torch, never
pythae: a kgen VAE given the weights of random torch networks must compute what they compute (encoder
mean and log-variance, decoder logits, and so the importance weights of the IWAE bound), to float32
round-off, on every backend.
"""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest
from conftest import ROOT, np_

torch = pytest.importorskip("torch")
sys.path.insert(0, str(ROOT / "benchmarks"))

import vae_peer

from kgen.metrics import likelihood
from kgen.models.vae import VAE

SHAPE, LATENT, HIDDEN = (4, 5, 1), 3, 16
PIXELS = math.prod(SHAPE)


def torch_networks(seed: int = 0):
    torch.manual_seed(seed)
    encoder = vae_peer.torch_encoder(PIXELS, LATENT, HIDDEN)
    decoder = vae_peer.torch_decoder(LATENT, PIXELS, HIDDEN)
    return encoder.eval(), decoder.eval()


def kgen_copy(encoder, decoder, tmp_path) -> VAE:
    """A kgen VAE of the same architecture holding the torch weights, through the benchmark's .npz."""
    model = VAE(SHAPE, latent_dim=LATENT, hidden=HIDDEN, seed=1)
    vae_peer.save_linears(tmp_path / "weights.npz", encoder, decoder)
    vae_peer.load_peer_weights(model, tmp_path / "weights.npz")
    return model


def to_torch_layout(x: np.ndarray):
    """(N, H, W, C) -> (N, C, H, W), as the pythae worker feeds its networks."""
    return torch.from_numpy(np.transpose(x, (0, 3, 1, 2)).copy())


def test_copied_weights_give_the_torch_encoder_and_decoder_outputs(tmp_path):
    encoder, decoder = torch_networks()
    model = kgen_copy(encoder, decoder, tmp_path)
    rng = np.random.default_rng(0)
    x = rng.random((7, *SHAPE), dtype=np.float32)
    z = rng.standard_normal((7, LATENT), dtype=np.float32)
    with torch.no_grad():
        h = encoder(to_torch_layout(x)).numpy()
        logits = decoder(torch.from_numpy(z)).numpy()
    mean, log_var = model.encode(x)
    np.testing.assert_allclose(np_(mean), h[:, :LATENT], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np_(log_var), h[:, LATENT:], rtol=1e-5, atol=1e-5)
    kgen_logits = np_(model.decoder(z)).reshape(7, -1)
    np.testing.assert_allclose(kgen_logits, logits, rtol=1e-5, atol=1e-5)
    # the pixel order too: pythae's decoder reshapes its output to (C, H, W), kgen's to (H, W, C)
    np.testing.assert_allclose(np.transpose(np_(model.decoder(z)), (0, 3, 1, 2)), logits.reshape(7, 1, 4, 5),
                               rtol=1e-5, atol=1e-5)


def test_kgen_importance_weights_of_the_copy_match_torch(tmp_path):
    """log w = log p(x|z) + log p(z) - log q(z|x) by kgen's estimator on the copy, and by torch.distributions
    on the torch networks, at the same z = mean + sigma * eps."""
    encoder, decoder = torch_networks(seed=3)
    model = kgen_copy(encoder, decoder, tmp_path)
    rng = np.random.default_rng(1)
    x = likelihood.binarize(rng.random((5, *SHAPE), dtype=np.float32), seed=2)
    eps = rng.standard_normal((5, 11, LATENT), dtype=np.float32)
    log_w = np_(likelihood.log_importance_weights(model, x, eps))

    with torch.no_grad():
        h = encoder(to_torch_layout(x)).double()
        mean, log_var = h[:, None, :LATENT], h[:, None, LATENT:]
        std = torch.exp(0.5 * log_var)
        z = mean + std * torch.from_numpy(eps).double()
        normal = torch.distributions.Normal
        log_q = normal(mean, std).log_prob(z).sum(-1)
        log_prior = normal(torch.zeros_like(z), torch.ones_like(z)).log_prob(z).sum(-1)
        logits = decoder(z.float().reshape(-1, LATENT)).double().reshape(5, 11, PIXELS)
        pixels = to_torch_layout(x).reshape(5, 1, PIXELS).double()
        log_px = torch.distributions.Bernoulli(logits=logits).log_prob(pixels.expand_as(logits)).sum(-1)
        expected = (log_px + log_prior - log_q).numpy()
    np.testing.assert_allclose(log_w, expected, rtol=1e-4, atol=1e-3)


def test_the_copy_refuses_networks_of_another_size(tmp_path):
    encoder, _ = torch_networks()
    model = VAE(SHAPE, latent_dim=LATENT, hidden=HIDDEN + 1, seed=1)
    with pytest.raises(ValueError, match="kernel"):
        vae_peer.copy_torch_weights(model.encoder, vae_peer.linear_weights(encoder))
    with pytest.raises(ValueError, match="Dense layers"):
        vae_peer.copy_torch_weights(model.decoder, vae_peer.linear_weights(encoder)[:1])


def test_the_vae_starts_like_torch_linear_layers_and_the_ae_like_keras():
    """The VAE's dense networks start as PyTorch's nn.Linear does (kernel and bias uniform in +-1/sqrt(fan_in)),
    the default chosen on a validation split against pythae; the other autoencoders keep Keras's Glorot kernels
    and zero biases."""
    import keras

    from kgen.models.ae import AE

    vae = VAE((28, 28, 1), latent_dim=16, hidden=512, seed=0)
    layers = [layer for net in (vae.encoder, vae.decoder) for layer in net.layers if isinstance(layer, keras.layers.Dense)]
    assert [np_(layer.kernel).shape for layer in layers] == [(784, 512), (512, 32), (16, 512), (512, 784)]
    for layer in layers:
        kernel, bias = np_(layer.kernel), np_(layer.bias)
        bound = 1.0 / math.sqrt(kernel.shape[0])
        assert np.abs(kernel).max() <= bound and np.abs(bias).max() <= bound
        assert np.std(kernel) == pytest.approx(bound / math.sqrt(3.0), rel=0.05)  # uniform(-b, b): std b / sqrt(3)
        assert np.std(bias) > 0.3 * bound
    ae = AE((28, 28, 1), latent_dim=16, seed=0)
    first = next(layer for layer in ae.encoder.layers if isinstance(layer, keras.layers.Dense))
    assert not np.any(np_(first.bias))
    assert np.abs(np_(first.kernel)).max() == pytest.approx(math.sqrt(6.0 / (784 + 512)), rel=0.02)
