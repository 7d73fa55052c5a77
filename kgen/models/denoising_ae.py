"""Denoising autoencoder (Vincent et al., 2008): reconstruct the clean x from a corrupted x~.

Every step draws a fresh corruption x~ ~ C(x~ | x) and minimises
-log p(x | decoder(encoder(x~))) (Goodfellow et al., Deep Learning, eq. 14.9):

  gaussian:     x~ = x + sigma * eps,  eps ~ N(0, I)
  masking:      each value set to the low end of the data range with probability p
  salt-pepper:  each value set to the low or high end (equally likely) with probability p

The corrupted image is clipped to the data range (except for real-valued data).
"""

from __future__ import annotations

import keras
from keras import ops

from kgen.models.ae import AE
from kgen.models.contract import Ability, register
from kgen.space import Range
from kgen.models.base import DATA_BOUNDS, Option, Rule

NOISES = ("gaussian", "masking", "salt-pepper")


@register
class DenoisingAE(AE):
    model_name = "denoising_ae"
    description = "denoising autoencoder: Gaussian, masking or salt-and-pepper corruption, clean target"
    abilities = frozenset({Ability.RECONSTRUCT, Ability.ENCODE, Ability.DECODE, Ability.DENOISE})
    search_space = {**AE.search_space, "noise_level": Range(0.1, 0.5, step=0.1)}
    options = (
        *(o for o in AE.options if o.name in ("latent_dim", "arch", "hidden", "loss")),
        Option("noise", str, "gaussian", "corruption", choices=NOISES),
        Option("noise_level", float, 0.3, "sigma (gaussian) or corrupted fraction (masking, salt-pepper)", minimum=0.0),
        *(o for o in AE.options if o.name == "data_range"),
    )
    rules = (Rule({"noise": ("masking", "salt-pepper")}, "--noise-level is a fraction for {noise} noise: it must be in "
                  "[0, 1], got {noise_level}", in_range={"noise_level": (0.0, 1.0)}),)
    regularized = True

    def corrupt(self, x, seed=None):
        """One draw of C(x~ | x); ``seed`` (an int) makes it reproducible."""
        x = ops.convert_to_tensor(x, "float32")
        # Drawn on flat rows (B, D): XLA:CPU does not vectorise a trailing channel axis of size 1.
        noisy = self.corrupt_rows(ops.reshape(x, (ops.shape(x)[0], -1)), self.seed_generator if seed is None else seed)
        return ops.reshape(noisy, ops.shape(x))

    def corrupt_rows(self, x, seed):
        noise, level = self.hparams["noise"], self.hparams["noise_level"]
        low, high = DATA_BOUNDS.get(self.hparams["data_range"], (None, None))
        if noise == "gaussian":
            noisy = x + level * keras.random.normal(ops.shape(x), seed=seed)
            return noisy if low is None else ops.clip(noisy, low, high)
        if low is None:  # real-valued data: "off" is 0, salt/pepper are -1/+1 standard deviations
            low, high = -1.0, 1.0
        u = keras.random.uniform(ops.shape(x), seed=seed)
        if noise == "masking":
            return ops.where(u < level, low, x)
        # salt-and-pepper: u < p/2 -> low, p/2 <= u < p -> high
        return ops.where(u < level / 2, low, ops.where(u < level, high, x))

    def model_inputs(self, x):
        return self.corrupt(x)
