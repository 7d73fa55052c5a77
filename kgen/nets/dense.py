"""Multi-layer perceptrons over flattened data."""

from __future__ import annotations

import math

import keras
from keras import layers

from kgen.nets.cast import float32_output

# How a Dense layer's weights start: "glorot", Keras's default (Glorot-uniform kernel, zero bias); "fan_in",
# PyTorch's nn.Linear default (kernel and bias uniform in +-1/sqrt(fan_in)), the VAE's (docs/reproduction.md).
INITS = ("glorot", "fan_in")



def dense(units: int, fan_in: int, init: str = "glorot", activation=None) -> layers.Dense:
    """A Dense layer of ``units`` over ``fan_in`` inputs, its weights started as ``init`` says (INITS)."""
    if init == "glorot":
        return layers.Dense(units, activation=activation)
    if init != "fan_in":
        raise ValueError(f"unknown initialisation '{init}'; choose one of: {', '.join(INITS)}")
    bound = 1.0 / math.sqrt(fan_in)
    return layers.Dense(units, activation=activation,
                        kernel_initializer=keras.initializers.VarianceScaling(1.0 / 3.0, "fan_in", "uniform"),
                        bias_initializer=keras.initializers.RandomUniform(-bound, bound))


def dense_encoder(input_shape: tuple[int, ...], outputs: int, hidden: int, name: str = "encoder",
                  init: str = "glorot", depth: int = 1) -> keras.Model:
    """x -> Flatten -> depth x Dense(hidden, relu) -> Dense(outputs)."""
    x = keras.Input(shape=input_shape)
    h = layers.Flatten()(x)
    fan_in = math.prod(input_shape)
    for _ in range(depth):
        h, fan_in = dense(hidden, fan_in, init, activation="relu")(h), hidden
    return keras.Model(x, float32_output(dense(outputs, fan_in, init)(h)), name=name)


def dense_decoder(latent_dim: int, output_shape: tuple[int, ...], hidden: int, name: str = "decoder",
                  init: str = "glorot", depth: int = 1) -> keras.Model:
    """z -> depth x Dense(hidden, relu) -> Dense(prod(shape)) -> Reshape(shape); linear output."""
    z = keras.Input(shape=(latent_dim,))
    h, fan_in = z, latent_dim
    for _ in range(depth):
        h, fan_in = dense(hidden, fan_in, init, activation="relu")(h), hidden
    h = dense(math.prod(output_shape), fan_in, init)(h)
    return keras.Model(z, float32_output(layers.Reshape(output_shape)(h)), name=name)


def shallow_encoder(input_shape: tuple[int, ...], outputs: int, name: str = "encoder",
                    init: str = "glorot") -> keras.Model:
    """x -> Flatten -> Dense(outputs): one affine map (W x + b)."""
    x = keras.Input(shape=input_shape)
    h = dense(outputs, math.prod(input_shape), init)(layers.Flatten()(x))
    return keras.Model(x, float32_output(h), name=name)


def shallow_decoder(latent_dim: int, output_shape: tuple[int, ...], name: str = "decoder",
                    init: str = "glorot") -> keras.Model:
    """z -> Dense(prod(shape)) -> Reshape(shape): one affine map."""
    z = keras.Input(shape=(latent_dim,))
    h = dense(math.prod(output_shape), latent_dim, init)(z)
    return keras.Model(z, float32_output(layers.Reshape(output_shape)(h)), name=name)
