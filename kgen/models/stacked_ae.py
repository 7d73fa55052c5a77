"""Stacked autoencoder: a symmetric stack of dense layers, e.g. 784-300-150-300-784.

Options:
- ``--widths 300,150``: the encoder's layer widths; the last is the code size.
  The decoder mirrors them (150 -> 300 -> input).
- ``--tied``: the decoder layer paired with encoder layer i uses W_i^T (its
  transposed kernel) and only has its own bias -- half the weights, and a
  regularizer (Géron, Hands-On ML, "Tying Weights").
- ``--pretrain-epochs N``: greedy layer-wise pretraining before fine-tuning
  (Bengio et al., 2007; Hinton & Salakhutdinov, 2006): layer i and its decoder
  partner are trained as a shallow autoencoder of the (frozen) codes of layers
  1..i-1 for N epochs each, then the whole stack is fine-tuned end to end.
"""

from __future__ import annotations

import math
import sys

import keras
from keras import layers, ops

from kgen.models import losses
from kgen.nets.cast import float32_output
from kgen.models.ae import AE
from kgen.models.contract import register
from kgen.space import Choice
from kgen.models.base import Option, Phase, PhasedModel, batch_inputs

ACTIVATIONS = ("relu", "selu", "elu", "sigmoid", "tanh")


@keras.saving.register_keras_serializable(package="kgen")
class DenseTransposed(layers.Layer):
    """y = activation(x W^T + b), with W the kernel of another Dense layer (a tied decoder layer).

    Only the bias belongs to this layer; the kernel is saved with its owner.
    """

    def __init__(self, tied_to: layers.Dense, activation=None, **kwargs):
        super().__init__(**kwargs)
        object.__setattr__(self, "tied_to", tied_to)  # a reference, not a tracked child
        self.units = int(tied_to.kernel.shape[0])
        self.activation = keras.activations.get(activation)

    def build(self, input_shape):
        self.bias = self.add_weight(shape=(self.units,), initializer="zeros", name="bias")

    def call(self, x):
        return self.activation(ops.matmul(x, ops.transpose(self.tied_to.kernel)) + self.bias)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.units)


def parse_widths(text: str) -> list[int]:
    """'300,150' -> [300, 150] (the option's form is checked when it is parsed)."""
    return [int(w) for w in text.split(",")]


@register
class StackedAE(AE):
    model_name = "stacked_ae"
    description = "stacked dense autoencoder (784-300-150-300-784), optional tied weights and greedy pretraining"
    search_space = {"widths": Choice("300,150", "500,250", "256,128,64")}
    options = (
        Option("widths", str, "300,150", "encoder layer widths, the last is the code size", form="positive_int_list"),
        Option("activation", str, "relu", "hidden and code non-linearity", choices=ACTIVATIONS),
        Option("tied", bool, False, "decoder uses the transposed encoder kernels"),
        Option("pretrain_epochs", int, 0, "greedy layer-wise pretraining epochs per layer before fine-tuning",
               minimum=0),
        *(o for o in AE.options if o.name in ("loss", "data_range")),
    )

    def build_networks(self) -> tuple[keras.Model, keras.Model]:
        self.widths = parse_widths(self.hparams["widths"])
        self.latent_dim = self.widths[-1]
        activation = self.hparams["activation"]
        inputs = math.prod(self.data_shape)
        self.encoder_layers = [layers.Dense(w, activation=activation, name=f"encode_{i + 1}")
                               for i, w in enumerate(self.widths)]
        x = keras.Input(self.data_shape)
        h = layers.Flatten()(x)
        for layer in self.encoder_layers:
            h = layer(h)
        encoder = keras.Model(x, float32_output(h), name="encoder")
        # decoder_layers[i] is the partner of encoder_layers[i]: it maps width i back to width i-1.
        below = [inputs, *self.widths[:-1]]
        self.decoder_layers = []
        for i, layer in enumerate(self.encoder_layers):
            act = activation if i > 0 else None  # the last decoder layer outputs logits
            if self.hparams["tied"]:
                self.decoder_layers.append(DenseTransposed(layer, activation=act, name=f"decode_{i + 1}"))
            else:
                self.decoder_layers.append(layers.Dense(below[i], activation=act, name=f"decode_{i + 1}"))
        z = keras.Input((self.latent_dim,))
        h = z
        for layer in reversed(self.decoder_layers):
            h = layer(h)
        decoder = keras.Model(z, float32_output(layers.Reshape(self.data_shape)(h)), name="decoder")
        return encoder, decoder

    # -- greedy layer-wise pretraining ----------------------------------------
    def before_training(self, dataset, learning_rate: float, steps_per_epoch: int | None = None,
                        verbose: int | str = "auto", callbacks: list | None = None) -> dict[str, float]:
        epochs = self.hparams["pretrain_epochs"]
        if not epochs:
            return {}
        print(f"[kgen] greedy layer-wise pretraining: {epochs} epoch(s) per layer", file=sys.stderr)
        layer_losses = self.pretrain(dataset, epochs, learning_rate, steps_per_epoch, self.jit_compile, verbose,
                                     steps_per_execution=self.steps_per_execution, callbacks=callbacks)
        return {f"layer_{i + 1}_loss": loss for i, loss in enumerate(layer_losses)}

    def pretrain(self, dataset, epochs: int, learning_rate: float, steps_per_epoch: int | None = None,
                 jit_compile: bool | str = "auto", verbose: int | str = "auto",
                 steps_per_execution: int = 1, callbacks: list | None = None) -> list[float]:
        """Train each layer pair as a shallow AE on the codes below it; returns each layer's final loss."""
        final = []
        for i in range(len(self.widths)):
            trainer = LayerPretrainer(self, i)
            trainer.compile(learning_rate=learning_rate, jit_compile=jit_compile, steps_per_execution=steps_per_execution)
            history = trainer.fit(dataset, epochs=epochs, steps_per_epoch=steps_per_epoch, verbose=verbose,
                                  callbacks=callbacks)
            final.append(float(history.history["loss"][-1]))
        return final


class LayerPretrainer(PhasedModel):
    """The shallow autoencoder of layer i of a StackedAE, sharing its layers.

    Input: h_{i-1} = codes of the frozen layers below (x itself for i = 0).
    Phase: minimise the reconstruction error of h_{i-1} from
    decoder_i(encoder_i(h_{i-1})) over encoder_i and decoder_i only: the data's
    likelihood for the first layer, squared error of the codes above it.
    """

    model_name = "stacked_ae_pretrainer"

    def __init__(self, stack: StackedAE, layer: int):
        super().__init__(stack.data_shape, seed=stack.seed)
        self.stack, self.layer = stack, layer
        self.built = True

    def layer_inputs(self, x):
        h = ops.reshape(x, (ops.shape(x)[0], -1))
        for layer in self.stack.encoder_layers[: self.layer]:
            h = layer(h)
        return ops.stop_gradient(h)

    def layer_loss(self, data, training: bool):
        x = batch_inputs(data)
        below = self.layer_inputs(x)
        out = self.stack.decoder_layers[self.layer](self.stack.encoder_layers[self.layer](below))
        if self.layer == 0:
            loss = ops.mean(self.stack.reconstruction_nll(x, ops.reshape(out, ops.shape(x))))
        else:
            loss = ops.mean(losses.squared_error(below, out))
        return loss, {"loss": loss}

    def training_phases(self) -> list[Phase]:
        pair = self.stack.encoder_layers[self.layer], self.stack.decoder_layers[self.layer]
        variables = [v for layer in pair for v in layer.trainable_variables]  # a tied layer owns only its bias
        return [Phase(f"pretrain_layer_{self.layer + 1}", self.layer_loss, variables, "pretrain")]
