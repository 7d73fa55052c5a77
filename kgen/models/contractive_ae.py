"""Contractive autoencoder (Rifai et al., 2011): penalise the Jacobian of the code.

    L = reconstruction + lambda * mean_batch || dh/dx ||_F^2            (eq. 2)

The Frobenius norm is computed exactly for any encoder through the core's
``input_gradient``: repeat each example once per code unit j, take the gradient
of sum_{b,j} h_j(x_{b,j}) (unit j of copy j only) w.r.t. the repeated batch;
copy j of example b then holds row j of the Jacobian, dh_j/dx at x_b. One
backward pass (over a k-times larger batch) gives all k rows; the penalty stays
differentiable, so training takes the second-order gradient.

For a one-layer sigmoid encoder h = sigmoid(W x + b) there is a closed form
(eq. 5):  ||J||_F^2 = sum_j (h_j (1 - h_j))^2 sum_i W_ij^2,  used as a cross-check
(``--jacobian closed-form`` trains with it).
"""

from __future__ import annotations

import keras
from keras import ops

from kgen.backend import input_gradient
from kgen.models.ae import AE, CODE_ACTIVATIONS
from kgen.models.base import Option


@keras.saving.register_keras_serializable(package="kgen")
class ContractiveAE(AE):
    model_name = "contractive_ae"
    description = "contractive autoencoder: lambda * ||dh/dx||_F^2, exact for any encoder depth"
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
    metric_names = ("loss", "reconstruction_loss", "contractive_penalty", "jacobian_norm")
    regularized = True

    def __init__(self, input_shape: tuple[int, ...], **kwargs):
        super().__init__(input_shape, **kwargs)
        if self.hparams["jacobian"] == "closed-form" and not self.has_closed_form():
            raise ValueError("--jacobian closed-form needs --arch shallow and --code-activation sigmoid")

    def has_closed_form(self) -> bool:
        return self.hparams["arch"] == "shallow" and self.hparams["code_activation"] == "sigmoid"

    def jacobian_norm(self, x):
        """||dh/dx||_F^2 per example, by automatic differentiation (any encoder)."""
        x = ops.convert_to_tensor(x, self.compute_dtype)
        batch, k = ops.shape(x)[0], self.latent_dim
        repeated = ops.repeat(x, k, axis=0)  # row b*k + j is example b, copy j
        unit_of_copy = ops.tile(ops.eye(k, dtype=self.compute_dtype), (batch, 1))  # one-hot j for row b*k + j

        def selected_codes(inputs):
            return ops.sum(self.encode(inputs, training=True) * unit_of_copy)

        rows = input_gradient(selected_codes, repeated)  # row b*k + j = dh_j/dx (x_b)
        return ops.sum(ops.reshape(ops.square(rows), (batch, -1)), axis=-1)

    def jacobian_norm_closed_form(self, x):
        """||dh/dx||_F^2 per example for h = sigmoid(W x + b) (Rifai et al., eq. 5)."""
        if not self.has_closed_form():
            raise ValueError("the closed form needs a one-layer sigmoid encoder (--arch shallow)")
        h = self.encode(x)
        kernel = self.encoder.layers[-1].kernel  # (inputs, k)
        return ops.sum(ops.square(h * (1.0 - h)) * ops.sum(ops.square(kernel), axis=0), axis=-1)

    def regularizer(self, inputs, codes):
        if self.hparams["jacobian"] == "closed-form":
            norms = self.jacobian_norm_closed_form(inputs)
        else:
            norms = self.jacobian_norm(inputs)
        mean_norm = ops.mean(norms)
        penalty = self.hparams["weight"] * mean_norm
        return penalty, {"contractive_penalty": penalty, "jacobian_norm": mean_norm}
