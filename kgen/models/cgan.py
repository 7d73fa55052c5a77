"""Conditional GAN (Mirza & Osindero 2014): G and D both see the class label y.

    min_G max_D  E_{x,y}[log D(x | y)] + E_{z,y}[log(1 - D(G(z | y) | y))]    (eq. 2)

y enters as a one-hot vector: appended to z for G; for D appended to the flattened
image (dense) or as C constant feature maps stacked on the image channels (conv).
Fakes in the D step take the real batch's labels, so both halves of D's batch
have the same class mix. ``sample(labels=...)`` draws class-c images.
"""

from __future__ import annotations

import math

from keras import ops

from kgen.models import conditions
from kgen.models.contract import Ability, register
from kgen.models.base import Option
from kgen.models.gan import CONV_GAN_STEPS, GAN, gan_options


@register
class CGAN(GAN):
    model_name = "cgan"
    default_steps = CONV_GAN_STEPS  # --arch conv by default
    description = "conditional GAN: one-hot label appended to G's noise and to D's input; sample --label c"
    abilities = frozenset({Ability.GENERATE, Ability.SAMPLE, Ability.CONDITIONAL, Ability.LABELLED_GENERATOR})
    options = (
        *gan_options(100, "conv"),
        *(o for o in GAN.options if o.name == "g_loss"),
        Option("num_classes", int, None, "number of classes (default: the dataset's)", minimum=2,
               from_data="num_classes"),
    )

    @property
    def num_classes(self) -> int:
        if self.hparams["num_classes"] is None:
            raise ValueError("cgan needs labelled data: the dataset has no labels (or pass --num-classes)")
        return self.hparams["num_classes"]

    def generator_inputs(self) -> int:
        return self.latent_dim + self.num_classes

    def discriminator_input_shape(self) -> tuple[int, ...]:
        if self.hparams["arch"] == "dense":
            return (math.prod(self.data_shape) + self.num_classes,)
        height, width, channels = self.data_shape
        return (height, width, channels + self.num_classes)

    def condition(self, data):
        return ops.one_hot(ops.cast(data[1], "int32"), self.num_classes)

    def generator_input(self, latent, condition):
        return ops.concatenate([latent, ops.cast(condition, latent.dtype)], axis=-1)

    def discriminator_input(self, x, condition):
        condition = ops.cast(condition, x.dtype)
        if self.hparams["arch"] == "dense":
            return ops.concatenate([ops.reshape(x, (ops.shape(x)[0], -1)), condition], axis=-1)
        height, width, _ = self.data_shape
        maps = ops.broadcast_to(condition[:, None, None, :], (ops.shape(x)[0], height, width, self.num_classes))
        return ops.concatenate([x, maps], axis=-1)

    def condition_of_labels(self, n: int, labels):
        """One-hot labels for n samples: ``labels`` an int (all the same), a sequence, or None (0, 1, ..., C-1, 0, ...)."""
        return conditions.one_hot_labels(n, labels, self.num_classes)
