"""Contractive autoencoder (Rifai et al., 2011): penalise the Jacobian of the code.

    L = reconstruction + lambda * mean_batch || dh/dx ||_F^2            (eq. 2)

The Frobenius norm is computed exactly for any encoder through the core's
``batch_jacobian``: one forward pass of the encoder, then the k vector-Jacobian
products with the unit vectors e_j (row j of each example's Jacobian, dh_j/dx),
vectorised by the backend (tape.batch_jacobian, vmap of the pullback, batched
autograd.grad). The penalty stays differentiable, so training takes the
second-order gradient.

For a one-layer sigmoid encoder h = sigmoid(W x + b) there is a closed form
(eq. 5):  ||J||_F^2 = sum_j (h_j (1 - h_j))^2 sum_i W_ij^2,  used as a cross-check
(``--jacobian closed-form`` trains with it).
"""

from __future__ import annotations

import keras
from keras import ops

from kgen.backend import batch_jacobian
from kgen.models.ae import AE, CODE_ACTIVATIONS
from kgen.models.contract import register
from kgen.space import Choice, log_range
from kgen.models.base import Option, Rule


@register
class ContractiveAE(AE):
    model_name = "contractive_ae"
    description = "contractive autoencoder: lambda * ||dh/dx||_F^2, exact for any encoder depth"
    search_space = {"latent_dim": Choice(32, 64, 128), "weight": log_range(1e-3, 1.0)}
    tuning_objective = "val_reconstruction_loss"  # the loss adds lambda * penalty: not comparable across lambda
    options = (
        Option("latent_dim", int, 64, "size of the code h", minimum=1),
        Option("arch", str, "shallow", "network type (shallow = one sigmoid layer, as in Rifai et al.)",
               choices=("shallow", "dense", "conv")),
        *(o for o in AE.options if o.name in ("hidden", "loss")),
        Option("weight", float, 0.1, "lambda, the contractive penalty weight", minimum=0.0),
        Option("code_activation", str, "sigmoid", "code non-linearity", choices=CODE_ACTIVATIONS),
        Option("jacobian", str, "autodiff", "penalty computation: autodiff (any encoder) or closed-form "
               "(one-layer sigmoid encoder)", choices=("autodiff", "closed-form")),
        *(o for o in AE.options if o.name == "data_range"),
    )
    rules = (Rule({"jacobian": ("closed-form",)}, "--jacobian closed-form needs --arch shallow and --code-activation "
                  "sigmoid", require={"arch": ("shallow",), "code_activation": ("sigmoid",)}),)
    metric_names = ("loss", "reconstruction_loss", "contractive_penalty", "jacobian_norm")
    regularized = True

    def has_closed_form(self) -> bool:
        return self.hparams["arch"] == "shallow" and self.hparams["code_activation"] == "sigmoid"

    def jacobian_norm(self, x):
        """||dh/dx||_F^2 per example, by automatic differentiation (any encoder)."""
        # Differentiated with respect to float32 inputs (the encoder casts them to its compute dtype),
        # so under a mixed policy the Jacobian and its squared sum are float32, not 16-bit sums.
        x = ops.convert_to_tensor(x, "float32")
        jacobian = batch_jacobian(lambda inputs: self.encode(inputs, training=True), x)  # (batch, k, *input)
        jacobian = ops.cast(ops.reshape(jacobian, (ops.shape(x)[0], -1)), "float32")
        return ops.sum(ops.square(jacobian), axis=-1)

    def jacobian_norm_closed_form(self, x):
        """||dh/dx||_F^2 per example for h = sigmoid(W x + b) (Rifai et al., eq. 5)."""
        if not self.has_closed_form():
            raise ValueError("the closed form needs a one-layer sigmoid encoder (--arch shallow)")
        h = self.encode(x)
        # W: the encoder's one Dense layer (under a mixed policy a float32 cast layer follows it)
        kernel = next(layer for layer in self.encoder.layers if isinstance(layer, keras.layers.Dense)).kernel
        return ops.sum(ops.square(h * (1.0 - h)) * ops.sum(ops.square(kernel), axis=0), axis=-1)

    def regularizer(self, inputs, codes):
        if self.hparams["jacobian"] == "closed-form":
            norms = self.jacobian_norm_closed_form(inputs)
        else:
            norms = self.jacobian_norm(inputs)
        mean_norm = ops.mean(norms)
        penalty = self.hparams["weight"] * mean_norm
        return penalty, {"contractive_penalty": penalty, "jacobian_norm": mean_norm}
