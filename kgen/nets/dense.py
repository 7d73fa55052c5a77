"""Multi-layer perceptrons over flattened data."""

from __future__ import annotations

import math

import keras
from keras import layers

from kgen.nets.cast import float32_output


def dense_encoder(input_shape: tuple[int, ...], outputs: int, hidden: int, name: str = "encoder",
                  depth: int = 1) -> keras.Model:
    """x -> Flatten -> depth x Dense(hidden, relu) -> Dense(outputs)."""
    x = keras.Input(shape=input_shape)
    h = layers.Flatten()(x)
    for _ in range(depth):
        h = layers.Dense(hidden, activation="relu")(h)
    return keras.Model(x, float32_output(layers.Dense(outputs)(h)), name=name)


def dense_decoder(latent_dim: int, output_shape: tuple[int, ...], hidden: int, name: str = "decoder",
                  depth: int = 1) -> keras.Model:
    """z -> depth x Dense(hidden, relu) -> Dense(prod(shape)) -> Reshape(shape); linear output."""
    z = keras.Input(shape=(latent_dim,))
    h = z
    for _ in range(depth):
        h = layers.Dense(hidden, activation="relu")(h)
    h = layers.Dense(math.prod(output_shape))(h)
    return keras.Model(z, float32_output(layers.Reshape(output_shape)(h)), name=name)


def shallow_encoder(input_shape: tuple[int, ...], outputs: int, name: str = "encoder") -> keras.Model:
    """x -> Flatten -> Dense(outputs): one affine map (W x + b)."""
    x = keras.Input(shape=input_shape)
    return keras.Model(x, float32_output(layers.Dense(outputs)(layers.Flatten()(x))), name=name)


def shallow_decoder(latent_dim: int, output_shape: tuple[int, ...], name: str = "decoder") -> keras.Model:
    """z -> Dense(prod(shape)) -> Reshape(shape): one affine map."""
    z = keras.Input(shape=(latent_dim,))
    return keras.Model(z, float32_output(layers.Reshape(output_shape)(layers.Dense(math.prod(output_shape))(z))),
                       name=name)
