"""Reusable networks. Every builder returns a built ``keras.Model``.

Encoders map data to a flat vector of ``outputs`` features; decoders map a
latent vector to data-shaped *pre-activations* (logits), the model applies the
output non-linearity that matches its likelihood.
"""

from __future__ import annotations

import keras

from kgen.nets.conv import conv_decoder, conv_encoder
from kgen.nets.dense import dense_decoder, dense_encoder, shallow_decoder, shallow_encoder

# dense: one hidden layer each way; conv: keras-io's conv net; shallow: one affine map each way.
ARCHS = ("dense", "conv", "shallow")


def encoder(arch: str, input_shape: tuple[int, ...], outputs: int, hidden: int, name: str = "encoder",
            init: str = "glorot", depth: int = 1) -> keras.Model:
    """``init``: how the dense and shallow networks' Dense layers start (``kgen.nets.dense.INITS``); the
    conv networks keep Keras's defaults. ``depth``: hidden layers of the dense encoder (the other archs
    have their own)."""
    if arch == "dense":
        return dense_encoder(input_shape, outputs, hidden, name=name, init=init, depth=depth)
    if arch == "shallow":
        return shallow_encoder(input_shape, outputs, name=name, init=init)
    return conv_encoder(input_shape, outputs, hidden, name=name)


def decoder(arch: str, latent_dim: int, output_shape: tuple[int, ...], hidden: int, name: str = "decoder",
            init: str = "glorot", depth: int = 1) -> keras.Model:
    """``depth``: hidden layers of the dense decoder (the other archs have their own)."""
    if arch == "dense":
        return dense_decoder(latent_dim, output_shape, hidden, name=name, init=init, depth=depth)
    if arch == "shallow":
        return shallow_decoder(latent_dim, output_shape, name=name, init=init)
    return conv_decoder(latent_dim, output_shape, hidden, name=name)


def check_arch(arch: str, data_shape: tuple[int, ...]) -> None:
    """Raise ValueError when ``arch`` cannot handle data of this shape."""
    if arch not in ARCHS:
        raise ValueError(f"unknown architecture '{arch}'; choose one of: {', '.join(ARCHS)}")
    if arch == "conv":
        if len(data_shape) != 3 or data_shape[0] % 4 or data_shape[1] % 4:
            raise ValueError(
                f"--arch conv needs images of shape (H, W, C) with H and W divisible by 4, got {data_shape}; use --arch dense"
            )
