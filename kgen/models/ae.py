"""Autoencoder: x -> encoder -> h -> decoder -> x_hat, trained on reconstruction error.

One phase per batch: minimise the reconstruction loss over all weights. The
loss follows the data: binary cross-entropy (a Bernoulli likelihood) for data in
[0, 1], squared error for real-valued data.

This class is also the core of the regularized autoencoders (sparse, denoising,
contractive, linear, stacked): they change what goes in (``model_inputs``), the
networks (``build_networks``), the code non-linearity (``code_activation``) or
add a penalty Omega(h) (``regularizer``); the loss is always

    L = mean_batch[ -log p(x | decoder(h)) ] + Omega,   h = encode(model_inputs(x))

(Goodfellow et al., Deep Learning, eq. 14.2).
"""

from __future__ import annotations

import math
import sys
from typing import ClassVar

import keras
from keras import ops

from kgen import nets
from kgen.models import losses
from kgen.models.contract import Ability, register
from kgen.space import AE_WIDTH, Choice
from kgen.models.base import DATA_RANGES, Option, Phase, PhasedModel, batch_inputs

CODE_ACTIVATIONS = ("linear", "sigmoid", "relu", "tanh")


@register
class AE(PhasedModel):
    model_name = "ae"
    description = "autoencoder (dense, conv or shallow), reconstruction loss chosen by the data"
    family = "autoencoder"
    abilities = frozenset({Ability.RECONSTRUCT, Ability.ENCODE, Ability.DECODE})
    search_space = {"latent_dim": Choice(8, 16, 32, 64), "hidden": AE_WIDTH}
    options = (
        Option("latent_dim", int, 32, "size of the code h", minimum=1),
        Option("arch", str, "dense", "network type", choices=nets.ARCHS),
        Option("hidden", int, None, "hidden width (default: 512 dense, 16 conv)", minimum=1),
        Option("loss", str, "auto", "reconstruction loss (auto: bce for [0,1] data, mse otherwise)",
               choices=("auto", "bce", "mse")),
        Option("allow_overcomplete", bool, False, "train a latent larger than the input without a regularizer"),
        Option("data_range", str, "unit", "input scaling, set by the data: unit=[0,1], symmetric=[-1,1], real",
               choices=DATA_RANGES),
    )
    metric_names = ("loss",)
    # Models with a regularizer (sparse, denoising, contractive, the VAE's KL) may
    # have more code units than inputs; a plain AE could then learn the identity.
    regularized: ClassVar[bool] = False
    # How the dense and shallow networks' weights start (kgen.nets.dense.INITS).
    network_init: ClassVar[str] = "glorot"

    def __init__(self, input_shape: tuple[int, ...], **kwargs):
        super().__init__(input_shape, **kwargs)
        self.latent_dim = self.hparams.get("latent_dim")
        self.loss_kind = self.choose_loss()
        self.encoder, self.decoder = self.build_networks()
        self.check_overcomplete()
        self.built = True

    def build_networks(self) -> tuple[keras.Model, keras.Model]:
        hp = self.hparams
        nets.check_arch(hp["arch"], self.data_shape)
        self.hidden = hp["hidden"] or (512 if hp["arch"] == "dense" else 16)
        # --depth: hidden layers of the dense networks, for the models that have the option (the AAE).
        shape = {"init": self.network_init, "depth": hp.get("depth", 1)}
        encoder = nets.encoder(hp["arch"], self.data_shape, self.encoder_outputs(), self.hidden, **shape)
        decoder = nets.decoder(hp["arch"], self.decoder_inputs(), self.data_shape, self.hidden, **shape)
        return encoder, decoder

    def check_overcomplete(self) -> None:
        inputs = math.prod(self.data_shape)
        if self.regularized or self.latent_dim <= inputs:
            return
        message = (f"--latent-dim {self.latent_dim} is larger than the input ({inputs} values): without a regularizer "
                   "an overcomplete autoencoder can learn the identity and nothing useful")
        if not self.hparams.get("allow_overcomplete"):
            raise ValueError(message + "; use sparse_ae, denoising_ae or contractive_ae, or pass --allow-overcomplete")
        print(f"[kgen] warning: {message}", file=sys.stderr)

    def encoder_outputs(self) -> int:
        return self.latent_dim

    def decoder_inputs(self) -> int:
        """Width of the decoder's input (the AAE appends a label code to z)."""
        return self.latent_dim

    def choose_loss(self) -> str:
        """bce for [0,1] data, mse otherwise, unless ``--loss`` says which."""
        loss, data_range = self.hparams.get("loss", "auto"), self.hparams["data_range"]
        if loss == "auto":
            return "bce" if data_range == "unit" else "mse"
        if loss == "bce" and data_range != "unit":
            raise ValueError("--loss bce needs data scaled to [0, 1]")
        return loss

    # -- the model's maps -------------------------------------------------------
    def code_activation(self, pre_activation):
        """The code non-linearity h = s(encoder(x)); linear unless the model's options say otherwise."""
        return keras.activations.get(self.hparams.get("code_activation", "linear"))(pre_activation)

    def encode(self, x, training: bool = False):
        return self.code_activation(self.encoder(x, training=training))

    def output_activation(self, logits):
        """Decoder pre-activations -> data space: sigmoid for [0,1], tanh for [-1,1]."""
        data_range = self.hparams["data_range"]
        if data_range == "unit":
            return ops.sigmoid(logits)
        if data_range == "symmetric":
            return ops.tanh(logits)
        return logits

    def decode(self, z, training: bool = False):
        return self.output_activation(self.decoder(z, training=training))

    def reconstruct(self, x, training: bool = False):
        return self.decode(self.encode(x, training), training)

    def call(self, x, training: bool = False):
        return self.reconstruct(x, training)

    def reconstruction_nll(self, x, logits):
        """Per-example reconstruction loss of decoder pre-activations ``logits``."""
        if self.loss_kind == "bce":
            return losses.bernoulli_nll(x, logits)
        return losses.squared_error(x, self.output_activation(logits))

    # -- hooks for the regularized autoencoders ----------------------------------
    def model_inputs(self, x):
        """What the encoder sees during a training or validation step (denoising: a corrupted x)."""
        return x

    def regularizer(self, inputs, codes) -> tuple[object, dict]:
        """Penalty Omega(h) added to the loss and the metrics it logs; None for a plain AE."""
        return None, {}

    # -- training -------------------------------------------------------------
    def reconstruction_loss(self, data, training: bool):
        x = batch_inputs(data)
        inputs = self.model_inputs(x)
        codes = self.encode(inputs, training)
        reconstruction = ops.mean(self.reconstruction_nll(x, self.decoder(codes, training=training)))
        penalty, metrics = self.regularizer(inputs, codes)
        if penalty is None:
            return reconstruction, {"loss": reconstruction}
        loss = reconstruction + penalty
        return loss, {"loss": loss, "reconstruction_loss": reconstruction, **metrics}

    def training_phases(self) -> list[Phase]:
        return [Phase("reconstruction", self.reconstruction_loss, self.trainable_variables, "autoencoder")]
