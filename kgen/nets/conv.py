"""Convolutional encoder/decoder of the keras-io VAE example, for H, W divisible by 4.

Encoder: Conv(32, 3, stride 2) -> Conv(64, 3, stride 2) -> Flatten -> Dense(hidden) -> Dense(outputs).
Decoder: Dense(H/4 * W/4 * 64) -> Reshape -> ConvT(64, 3, stride 2) -> ConvT(32, 3, stride 2) -> ConvT(C, 3).
For 28x28x1 with hidden=16 this is exactly keras-io's "Variational AutoEncoder".
"""

from __future__ import annotations

import keras
from keras import layers

from kgen.nets.cast import float32_output

from kgen.backend import conv_transpose


@keras.saving.register_keras_serializable(package="kgen")
class Conv2DTranspose(layers.Conv2DTranspose):
    """``keras.layers.Conv2DTranspose`` computed by ``kgen.backend.conv_transpose``.

    Same weights, config and outputs as the Keras layer; on JAX its kernel
    gradient avoids XLA:CPU's slow lhs-dilated convolution (see the helper).
    """

    def call(self, inputs):
        outputs = conv_transpose(
            inputs, self.kernel, strides=list(self.strides), padding=self.padding,
            output_padding=self.output_padding, dilation_rate=self.dilation_rate, data_format=self.data_format,
        )
        if self.use_bias:
            outputs = outputs + (self.bias if self.data_format == "channels_last" else keras.ops.reshape(self.bias, (1, -1, 1, 1)))
        return self.activation(outputs) if self.activation is not None else outputs


def conv_encoder(input_shape: tuple[int, ...], outputs: int, hidden: int, name: str = "encoder") -> keras.Model:
    x = keras.Input(shape=input_shape)
    h = layers.Conv2D(32, 3, strides=2, padding="same", activation="relu")(x)
    h = layers.Conv2D(64, 3, strides=2, padding="same", activation="relu")(h)
    h = layers.Flatten()(h)
    h = layers.Dense(hidden, activation="relu")(h)
    return keras.Model(x, float32_output(layers.Dense(outputs)(h)), name=name)


def conv_decoder(latent_dim: int, output_shape: tuple[int, ...], hidden: int, name: str = "decoder") -> keras.Model:
    height, width, channels = output_shape
    z = keras.Input(shape=(latent_dim,))
    h = layers.Dense((height // 4) * (width // 4) * 64, activation="relu")(z)
    h = layers.Reshape((height // 4, width // 4, 64))(h)
    h = Conv2DTranspose(64, 3, strides=2, padding="same", activation="relu")(h)
    h = Conv2DTranspose(32, 3, strides=2, padding="same", activation="relu")(h)
    return keras.Model(z, float32_output(Conv2DTranspose(channels, 3, padding="same")(h)), name=name)
