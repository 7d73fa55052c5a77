"""InfoGAN (Chen et al. 2016): a GAN whose generator input carries codes c it must keep recoverable.

G's input is [z | c_cat | c_cont]: noise z ~ N(0, I), a categorical code c_cat
(one-hot, uniform over ``categories``) and ``continuous_codes`` codes c_cont ~ U(-1, 1).
A head Q on D's shared body predicts the codes from G(z, c). The game is (eq. 6)

    min_{G,Q} max_D  V(D, G) - lambda * L_I(G, Q)

where L_I = E[log Q(c | G(z, c))] + H(c) is the variational lower bound on the mutual
information I(c; G(z, c)) (eq. 5). kgen minimises its negative up to the constant
H(c), the ``info_loss``:

    info_loss = CE(c_cat, Q_cat(x)) + continuous_weight * sum_j NLL(c_j | N(mu_j(x), sigma_j(x)^2))

(categorical cross-entropy plus a factored Gaussian negative log-likelihood,
section 6 of the paper). It enters both phases weighted by ``info_weight``
(lambda): the discriminator phase (D's body learns features Q can read; as in the
authors' code) and the generator/Q phase, which updates G and the Q head.

The authors' MNIST experiment trains G and Q five times faster than D: Adam at 1e-3 for G,
2e-4 for D, lambda = 1 (openai/InfoGAN, launchers/run_mnist_exp.py). ``generator_rate`` is that
ratio; with D's rate alone the categorical code tends to be spent on style (slant, stroke width)
while the noise carries the digit (measured in docs/reproduction.md).
"""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import ops

from kgen.models.contract import Ability, register
from kgen.space import log_range
from kgen.models.base import Option, scaled_rate
from kgen.models.gan import CONV_GAN_STEPS, GAN, gan_options
from kgen.nets import gan as nets


@register
class InfoGAN(GAN):
    model_name = "infogan"
    default_steps = CONV_GAN_STEPS  # --arch conv by default
    description = "InfoGAN: categorical + continuous codes recovered by a Q head on D's body (mutual-information term)"
    abilities = frozenset({Ability.GENERATE, Ability.SAMPLE, Ability.TRAVERSE, Ability.CATEGORICAL_CODE})
    search_space = {**GAN.search_space, "info_weight": log_range(0.5, 2.0)}
    options = (
        *gan_options(62, "conv"),
        *(o for o in GAN.options if o.name == "g_loss"),
        Option("categories", int, 10, "values of the categorical code", minimum=2),
        Option("continuous_codes", int, 2, "number of continuous codes U(-1, 1)", minimum=0),
        Option("info_weight", float, 1.0, "lambda, weight of the information term", minimum=0.0),
        Option("continuous_weight", float, 0.1, "weight of the continuous codes' Gaussian NLL", minimum=0.0),
        Option("generator_rate", float, 5.0, "learning rate of G and the Q head as a multiple of --learning-rate "
               "(and of its --lr-schedule); D keeps --learning-rate. 5: the authors' 1e-3 for G against 2e-4 for D",
               minimum=0.0, exclusive=True),
    )
    metric_names = ("d_loss", "g_loss", "info_loss", "d_real", "d_fake", "discriminator_grad_norm",
                    "generator_grad_norm")

    @property
    def code_sizes(self) -> tuple[int, int, int]:
        """(noise, categorical, continuous) widths of G's input."""
        return self.latent_dim, self.hparams["categories"], self.hparams["continuous_codes"]

    def generator_inputs(self) -> int:
        return sum(self.code_sizes)

    def build_heads(self, features: int) -> None:
        _, categories, continuous = self.code_sizes
        # logits of c_cat, then mean and log-std of each continuous code
        self.q_head = nets.head(features, categories + 2 * continuous, name="q_head", hidden=128)

    def default_optimizers(self, learning_rate) -> dict[str, keras.optimizers.Optimizer]:
        """D at --learning-rate, G and Q at --generator-rate times it (Adam, beta_1 0.5 both)."""
        return {"discriminator": self.make_optimizer(learning_rate),
                "generator": self.make_optimizer(scaled_rate(learning_rate, self.hparams["generator_rate"]))}

    def generator_variables(self) -> list:
        return self.generator.trainable_variables + self.q_head.trainable_variables

    def code_logits(self, x):
        """Q's logits of the categorical code c_cat for images x: the code an image is read as."""
        _, categories, _ = self.code_sizes
        return self.q_head(self.features(ops.convert_to_tensor(x, "float32")))[:, :categories]

    def sample_latent(self, n, seed=None):
        """[z | one-hot c_cat | c_cont], drawn from the prior."""
        noise, categories, continuous = self.code_sizes
        seeds = self.seed_generator if seed is None else keras.random.SeedGenerator(seed)
        z = keras.random.normal((n, noise), seed=seeds)
        c_cat = ops.one_hot(keras.random.randint((n,), 0, categories, seed=seeds), categories)
        c_cont = keras.random.uniform((n, continuous), -1.0, 1.0, seed=seeds)
        return ops.concatenate([z, ops.cast(c_cat, z.dtype), c_cont], axis=-1)

    def info_loss(self, latent, fake_features):
        """-(L_I - H(c)): the codes' negative log-likelihood under Q, averaged over the batch."""
        noise, categories, continuous = self.code_sizes
        q = self.q_head(fake_features)
        c_cat = latent[:, noise : noise + categories]
        loss = ops.mean(keras.losses.categorical_crossentropy(c_cat, q[:, :categories], from_logits=True))
        if continuous:
            c_cont = latent[:, noise + categories :]
            mean = q[:, categories : categories + continuous]
            log_std = ops.clip(q[:, categories + continuous :], -5.0, 3.0)
            nll = 0.5 * math.log(2 * math.pi) + log_std + 0.5 * ops.square((c_cont - mean) * ops.exp(-log_std))
            loss = loss + self.hparams["continuous_weight"] * ops.mean(ops.sum(nll, axis=1))
        return loss

    def discriminator_regularizer(self, real, fake, latent, condition, fake_features, training):
        return self.hparams["info_weight"] * self.info_loss(latent, fake_features), {}

    def generator_regularizer(self, latent, fake_features, training):
        info = self.info_loss(latent, fake_features)
        return self.hparams["info_weight"] * info, {"info_loss": info}

    def traversal_grids(self, seed: int = 0, rows: int = 8, steps: int = 10) -> dict[str, tuple[object, int]]:
        """Code-traversal grids (Chen et al., figure 2), {name: (images, columns)}:
        ``categorical``: one row per noise draw, one column per category (continuous codes 0);
        ``continuous_j``: one row per category, c_j from -2 to 2 across (other codes 0, one fixed z)."""
        noise, categories, continuous = self.code_sizes
        z = ops.convert_to_numpy(keras.random.normal((rows, noise), seed=seed))
        grids = {}
        latent = np.zeros((rows, categories, noise + categories + continuous), "float32")
        latent[:, :, :noise] = z[:, None, :]
        latent[:, np.arange(categories), noise + np.arange(categories)] = 1.0
        grids["categorical"] = (self.generate(latent.reshape(rows * categories, -1)), categories)
        values = np.linspace(-2.0, 2.0, steps, dtype="float32")
        for j in range(continuous):
            latent = np.zeros((categories, steps, noise + categories + continuous), "float32")
            latent[:, :, :noise] = z[0]
            latent[np.arange(categories), :, noise + np.arange(categories)] = 1.0
            latent[:, :, noise + categories + j] = values
            grids[f"continuous_{j + 1}"] = (self.generate(latent.reshape(categories * steps, -1)), steps)
        return grids
