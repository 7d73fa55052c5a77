"""Generators and discriminators of the GAN family, dense (Goodfellow et al. 2014) and
convolutional (DCGAN, Radford et al. 2016).

A generator maps a flat input vector (the noise, plus any label or code the model
appends) to data-shaped *pre-activations*: the model applies tanh for data in [-1, 1].
A discriminator maps data-shaped input (possibly with extra label channels) to
``features`` = its last hidden layer; the model puts its heads on top (the real/fake
logit, InfoGAN's Q head), so heads can share the body.

DCGAN guidelines (Radford et al., section 3): strided convolutions in D and
fractionally-strided (transposed) ones in G instead of pooling; batch norm in both
(not on D's input layer nor G's output); ReLU in G, LeakyReLU(0.2) in D; no hidden
dense layers beyond G's projection; weights from N(0, 0.02).
"""

from __future__ import annotations

import math

import keras
from keras import layers

from kgen.nets.cast import float32_output

from kgen.nets.conv import Conv2DTranspose

NORMALIZATIONS = ("batch", "layer", "none")


def dcgan_initializer() -> keras.initializers.Initializer:
    return keras.initializers.RandomNormal(stddev=0.02)


def upsampling_steps(height: int, width: int) -> int:
    """How many stride-2 steps G takes: the most that keep a start size >= 4 (28 -> 7x7, 32 -> 4x4)."""
    steps = 0
    while height % 2 == 0 and width % 2 == 0 and height // 2 >= 4 and width // 2 >= 4:
        height, width, steps = height // 2, width // 2, steps + 1
    if steps == 0:
        raise ValueError(f"conv GANs need image sides divisible by 2 at least once, got {height}x{width}; use --arch dense")
    return steps


def check_conv_shape(shape: tuple[int, ...]) -> None:
    if len(shape) != 3:
        raise ValueError(f"--arch conv needs images of shape (H, W, C), got {shape}; use --arch dense")
    upsampling_steps(shape[0], shape[1])


def _normalization(kind: str) -> layers.Layer | None:
    if kind == "batch":
        return layers.BatchNormalization(momentum=0.9)
    if kind == "layer":
        return layers.LayerNormalization()
    return None


def dense_generator(inputs: int, output_shape: tuple[int, ...], hidden: int, name: str = "generator") -> keras.Model:
    """z -> Dense(h) -> Dense(2h) -> Dense(prod(shape)) -> Reshape, LeakyReLU(0.2) between."""
    z = keras.Input(shape=(inputs,))
    h = layers.LeakyReLU(0.2)(layers.Dense(hidden)(z))
    h = layers.LeakyReLU(0.2)(layers.Dense(2 * hidden)(h))
    h = layers.Dense(math.prod(output_shape))(h)
    return keras.Model(z, float32_output(layers.Reshape(output_shape)(h)), name=name)


def dense_discriminator(input_shape: tuple[int, ...], hidden: int, normalization: str = "none",
                        name: str = "discriminator") -> keras.Model:
    """x -> Flatten -> Dense(2h) -> Dense(h) features, LeakyReLU(0.2) after each."""
    x = keras.Input(shape=input_shape)
    h = layers.Flatten()(x)
    for width in (2 * hidden, hidden):
        h = layers.Dense(width)(h)
        norm = _normalization(normalization)
        h = layers.LeakyReLU(0.2)(norm(h) if norm is not None else h)
    return keras.Model(x, h, name=name)


def conv_generator(inputs: int, output_shape: tuple[int, ...], filters: int, name: str = "generator") -> keras.Model:
    """DCGAN generator: project z to (H/2^n, W/2^n, filters*2^(n-1)), then n stride-2 transposed convs
    halving the channels (BN + ReLU after each but the last, which outputs the image channels)."""
    height, width, channels = output_shape
    steps = upsampling_steps(height, width)
    init = dcgan_initializer()
    start = (height >> steps, width >> steps, filters * 2 ** (steps - 1))
    z = keras.Input(shape=(inputs,))
    h = layers.Dense(math.prod(start), use_bias=False, kernel_initializer=init)(z)
    h = layers.ReLU()(layers.BatchNormalization(momentum=0.9)(h))
    h = layers.Reshape(start)(h)
    for i in range(steps - 1, 0, -1):
        h = Conv2DTranspose(filters * 2 ** (i - 1), 4, strides=2, padding="same", use_bias=False,
                            kernel_initializer=init)(h)
        h = layers.ReLU()(layers.BatchNormalization(momentum=0.9)(h))
    out = Conv2DTranspose(channels, 4, strides=2, padding="same", kernel_initializer=init)(h)
    return keras.Model(z, float32_output(out), name=name)


def conv_discriminator(input_shape: tuple[int, ...], filters: int, normalization: str = "batch",
                       name: str = "discriminator") -> keras.Model:
    """DCGAN discriminator body: stride-2 convs doubling the channels (no normalization on the
    first), LeakyReLU(0.2), flattened as the features."""
    steps = upsampling_steps(input_shape[0], input_shape[1])
    init = dcgan_initializer()
    x = keras.Input(shape=input_shape)
    h = x
    for i in range(steps):
        h = layers.Conv2D(filters * 2**i, 4, strides=2, padding="same", kernel_initializer=init)(h)
        norm = _normalization(normalization) if i > 0 else None
        h = layers.LeakyReLU(0.2)(norm(h) if norm is not None else h)
    return keras.Model(x, layers.Flatten()(h), name=name)


def generator(arch: str, inputs: int, output_shape: tuple[int, ...], width: int, name: str = "generator") -> keras.Model:
    if arch == "dense":
        return dense_generator(inputs, output_shape, width, name=name)
    return conv_generator(inputs, output_shape, width, name=name)


def discriminator(arch: str, input_shape: tuple[int, ...], width: int, normalization: str,
                  name: str = "discriminator") -> keras.Model:
    if arch == "dense":
        return dense_discriminator(input_shape, width, normalization, name=name)
    return conv_discriminator(input_shape, width, normalization, name=name)


def head(features: int, outputs: int, name: str, hidden: int = 0) -> keras.Model:
    """A dense head on discriminator features: [Dense(hidden) + LeakyReLU] -> Dense(outputs)."""
    f = keras.Input(shape=(features,))
    h = f
    if hidden:
        h = layers.LeakyReLU(0.2)(layers.Dense(hidden)(h))
    return keras.Model(f, float32_output(layers.Dense(outputs)(h)), name=name)
