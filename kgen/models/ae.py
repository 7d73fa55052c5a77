"""Autoencoder: x -> encoder -> z -> decoder -> x_hat, trained on reconstruction error.

One phase per batch: minimise the reconstruction loss over all weights. The
loss follows the data: binary cross-entropy (a Bernoulli likelihood) for data in
[0, 1], squared error for real-valued data.
"""

from __future__ import annotations

import keras
from keras import ops

from kgen import nets
from kgen.models import losses
from kgen.models.base import Option, Phase, PhasedModel, batch_inputs


@keras.saving.register_keras_serializable(package="kgen")
class AE(PhasedModel):
    model_name = "ae"
    description = "autoencoder (dense or conv), reconstruction loss chosen by the data"
    options = (
        Option("latent_dim", int, 32, "size of the code z", minimum=1),
        Option("arch", str, "dense", "network type", choices=nets.ARCHS),
        Option("hidden", int, None, "hidden width (default: 512 dense, 16 conv)", minimum=1),
        Option("loss", str, "auto", "reconstruction loss (auto: bce for [0,1] data, mse otherwise)",
               choices=("auto", "bce", "mse")),
        Option("data_range", str, "unit", "input scaling, set by the data: unit=[0,1], symmetric=[-1,1], real",
               choices=("unit", "symmetric", "real")),
    )
    metric_names = ("loss",)

    def __init__(self, input_shape: tuple[int, ...], **kwargs):
        super().__init__(input_shape, **kwargs)
        hp = self.hparams
        nets.check_arch(hp["arch"], self.data_shape)
        self.hidden = hp["hidden"] or (512 if hp["arch"] == "dense" else 16)
        self.latent_dim = hp["latent_dim"]
        self.loss_kind = self.choose_loss()
        self.encoder = nets.encoder(hp["arch"], self.data_shape, self.encoder_outputs(), self.hidden)
        self.decoder = nets.decoder(hp["arch"], self.latent_dim, self.data_shape, self.hidden)
        self.built = True

    def encoder_outputs(self) -> int:
        return self.latent_dim

    def choose_loss(self) -> str:
        """bce for [0,1] data, mse otherwise, unless ``--loss`` says which."""
        loss, data_range = self.hparams["loss"], self.hparams["data_range"]
        if loss == "auto":
            return "bce" if data_range == "unit" else "mse"
        if loss == "bce" and data_range != "unit":
            raise ValueError("--loss bce needs data scaled to [0, 1]")
        return loss

    # -- the model's maps -------------------------------------------------------
    def encode(self, x, training: bool = False):
        return self.encoder(x, training=training)

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

    # -- training -------------------------------------------------------------
    def reconstruction_loss(self, data, training: bool):
        x = batch_inputs(data)
        logits = self.decoder(self.encode(x, training), training=training)
        loss = ops.mean(self.reconstruction_nll(x, logits))
        return loss, {"loss": loss}

    def training_phases(self) -> list[Phase]:
        return [Phase("reconstruction", self.reconstruction_loss, self.trainable_variables, "autoencoder")]
