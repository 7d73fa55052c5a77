"""Generative adversarial networks (Goodfellow et al. 2014) and DCGAN (Radford et al. 2016).

The two-player game (Goodfellow et al., eq. 1)

    min_G max_D  E_x[log D(x)] + E_z[log(1 - D(G(z)))]

is played by alternating gradient steps (Algorithm 1): ``d_steps`` discriminator
steps, then one generator step. With D(x) = sigmoid(l(x)) and log sigmoid(l) =
-softplus(-l), log(1 - sigmoid(l)) = -softplus(l):

    discriminator: minimise  mean softplus(-l(x)) + mean softplus(l(G(z)))
    generator, "minimax":        minimise  mean log(1 - D(G(z))) = -mean softplus(l(G(z)))
    generator, "non-saturating": minimise -mean log D(G(z))     =  mean softplus(-l(G(z)))

The non-saturating loss has the same fixed point but strong gradients early on,
when D rejects G's samples with confidence (section 3 of the paper).

This file also holds what every model of the family shares (``GAN``): the
latent prior, the generator/discriminator split, the two phases, the fixed-noise
grid, interpolation. The variants change the objective (``wgan.py``), the
inputs (``cgan.py``: labels) or add a regularizer (``infogan.py``, WGAN-GP).
Images are in [-1, 1]; G ends in tanh. Between each D step the real batch stays
the same and the noise is drawn afresh (Algorithm 1 draws a new real batch too).
"""

from __future__ import annotations

from typing import ClassVar

import keras
from keras import ops

from kgen.models import losses
from kgen.models.contract import Ability, register
from kgen.space import Choice, GAN_WIDTH, Range
from kgen.models.base import DATA_RANGES, Option, Phase, PhasedModel, batch_inputs
from kgen.nets import gan as nets

G_LOSSES = ("non-saturating", "minimax")


def gan_options(latent_dim: int, arch: str | None) -> tuple[Option, ...]:
    """The options every GAN shares; ``arch`` None: the model has one architecture."""
    arch_option = () if arch is None else (Option("arch", str, arch, "network type", choices=("dense", "conv")),)
    return (
        Option("latent_dim", int, latent_dim, "size of the noise z ~ N(0, I)", minimum=1),
        *arch_option,
        Option("width", int, None, "dense: hidden width (default 256); conv: filters of the first D layer (default 64)",
               minimum=1),
        Option("d_steps", int, 1, "discriminator steps per generator step (k of Algorithm 1)", minimum=1),
        Option("data_range", str, "symmetric", "input scaling, set by the data", choices=DATA_RANGES),
    )


# Generator steps of a conv GAN without --epochs: a conv step costs ~10x a dense one on a CPU, and 1,500
# give digits of every class (DCGAN on the offline MNIST digits: FID 23.6, recall 0.79; 8 minutes on 2 cores).
CONV_GAN_STEPS = 1500


@register
class GAN(PhasedModel):
    model_name = "gan"
    description = "Goodfellow's MLP GAN: k discriminator steps, then a generator step (minimax or non-saturating)"
    family = "gan"
    abilities = frozenset({Ability.GENERATE, Ability.SAMPLE})
    search_space = {"latent_dim": Choice(32, 64, 100, 128), "width": GAN_WIDTH, "d_steps": Range(1, 3)}
    options = (
        *gan_options(100, None),
        Option("g_loss", str, "non-saturating", "generator loss", choices=G_LOSSES),
    )
    data_range = "symmetric"
    default_learning_rate = 2e-4
    # Without --epochs: 10,000 generator steps for this MLP GAN, minutes on 2 CPU cores (1,500 left
    # noisy samples that miss most of the data: FID 99.5 against 23.3 in the judge's features, recall 0.01
    # against 0.80, on the 4,500 offline MNIST digits); CONV_GAN_STEPS for the conv GANs.
    default_steps = 10_000
    metric_names = ("d_loss", "g_loss", "d_real", "d_fake", "discriminator_grad_norm", "generator_grad_norm")
    arch: ClassVar[str] = "dense"  # when the model has no --arch option
    discriminator_steps_option: ClassVar[str] = "d_steps"  # WGANs call it n_critic
    # Normalization in D for each architecture (DCGAN: batch norm; a critic with a gradient penalty: none).
    discriminator_normalization: ClassVar[dict[str, str]] = {"dense": "none", "conv": "batch"}

    def __init__(self, input_shape: tuple[int, ...], **kwargs):
        super().__init__(input_shape, **kwargs)
        hp = self.hparams
        if hp["data_range"] != "symmetric":
            raise ValueError(f"{self.model_name} generates images in [-1, 1] (tanh); this dataset's values are "
                             "unbounded, so they cannot be scaled to that range")
        self.latent_dim = hp["latent_dim"]
        arch = hp.get("arch", self.arch)
        if arch == "conv":
            nets.check_conv_shape(self.data_shape)
        width = hp["width"] or (256 if arch == "dense" else 64)
        self.generator = nets.generator(arch, self.generator_inputs(), self.data_shape, width)
        self.discriminator = nets.discriminator(arch, self.discriminator_input_shape(), width,
                                                self.discriminator_normalization[arch])
        features = self.discriminator.output_shape[-1]
        self.discriminator_head = nets.head(features, 1, name="discriminator_head")
        self.build_heads(features)
        self.built = True

    # -- what each variant may change --------------------------------------------
    def generator_inputs(self) -> int:
        """Width of G's input vector (cgan appends the one-hot label)."""
        return self.latent_dim

    def discriminator_input_shape(self) -> tuple[int, ...]:
        """Shape of D's input (cgan appends label channels)."""
        return self.data_shape

    def build_heads(self, features: int) -> None:
        """Extra networks on D's features (InfoGAN's Q head)."""

    def condition(self, data):
        """The conditioning input of a batch (cgan: one-hot labels); None for unconditional models."""
        return None

    def discriminator_variables(self) -> list:
        return self.discriminator.trainable_variables + self.discriminator_head.trainable_variables

    def generator_variables(self) -> list:
        return self.generator.trainable_variables

    def make_optimizer(self, learning_rate) -> keras.optimizers.Optimizer:
        """Adam with beta_1 = 0.5 (Radford et al., section 4: 0.9 oscillated)."""
        return keras.optimizers.Adam(learning_rate, beta_1=0.5)

    def default_optimizers(self, learning_rate) -> dict[str, keras.optimizers.Optimizer]:
        return {"discriminator": self.make_optimizer(learning_rate), "generator": self.make_optimizer(learning_rate)}

    # -- the two players -------------------------------------------------------------
    def sample_latent(self, n, seed=None):
        """z ~ N(0, I); ``seed`` fixes the draw (the fixed-noise grid), else the model's generator."""
        return keras.random.normal((n, self.latent_dim), seed=self.seed_generator if seed is None else seed)

    def generator_input(self, latent, condition):
        return latent

    def generate(self, latent, condition=None, training: bool = False):
        """Images in [-1, 1] from latent vectors (and the condition, for conditional models)."""
        return ops.tanh(self.generator(self.generator_input(latent, condition), training=training))

    def discriminator_input(self, x, condition):
        return x

    def features(self, x, condition=None, training: bool = False):
        """D's last hidden layer, shared by its heads."""
        return self.discriminator(self.discriminator_input(x, condition), training=training)

    def discriminate(self, x, condition=None, training: bool = False):
        """D's logit (a critic's score for WGANs), one per example."""
        return self.discriminator_head(self.features(x, condition, training))[:, 0]

    def call(self, latent, training: bool = False):
        return self.generate(latent, training=training)

    def sample(self, n: int, seed: int | None = None, labels=None):
        """n images from the prior; ``labels`` only for conditional models."""
        return self.generate(self.sample_latent(n, seed), self.condition_of_labels(n, labels))

    def condition_of_labels(self, n: int, labels):
        if labels is not None:
            raise ValueError(f"model '{self.model_name}' is not conditional; it takes no --label")
        return None

    # -- the objective (WGANs override these two) --------------------------------------
    def discriminator_objective(self, real_logits, fake_logits):
        """Minus D's value (eq. 1), and D(x), D(G(z)) as probabilities."""
        loss = losses.discriminator_loss(real_logits, fake_logits)
        return loss, {"d_real": ops.mean(ops.sigmoid(real_logits)), "d_fake": ops.mean(ops.sigmoid(fake_logits))}

    def generator_objective(self, fake_logits):
        return losses.generator_loss(fake_logits, self.hparams.get("g_loss", "non-saturating"))

    # -- regularizers (WGAN-GP's penalty, InfoGAN's information term) -------------------
    def discriminator_regularizer(self, real, fake, latent, condition, fake_features, training):
        return None, {}

    def generator_regularizer(self, latent, fake_features, training):
        return None, {}

    # -- the phases --------------------------------------------------------------------
    def discriminator_loss(self, data, training: bool):
        real, condition = batch_inputs(data), self.condition(data)
        latent = self.sample_latent(ops.shape(real)[0])
        fake = ops.stop_gradient(self.generate(latent, condition, training))
        real_logits = self.discriminator_head(self.features(real, condition, training))[:, 0]
        fake_features = self.features(fake, condition, training)
        fake_logits = self.discriminator_head(fake_features)[:, 0]
        loss, metrics = self.discriminator_objective(real_logits, fake_logits)
        penalty, extra = self.discriminator_regularizer(real, fake, latent, condition, fake_features, training)
        if penalty is not None:
            loss = loss + penalty
        return loss, {"d_loss": loss, **metrics, **extra}

    def generator_loss(self, data, training: bool):
        condition = self.condition(data)
        latent = self.sample_latent(ops.shape(batch_inputs(data))[0])
        fake_features = self.features(self.generate(latent, condition, training), condition, training)
        loss = self.generator_objective(self.discriminator_head(fake_features)[:, 0])
        penalty, extra = self.generator_regularizer(latent, fake_features, training)
        if penalty is not None:
            loss = loss + penalty
        return loss, {"g_loss": loss, **extra}

    def training_phases(self) -> list[Phase]:
        return [
            Phase("discriminator", self.discriminator_loss, self.discriminator_variables(), "discriminator",
                  repeats=self.hparams[self.discriminator_steps_option]),
            Phase("generator", self.generator_loss, self.generator_variables(), "generator"),
        ]


@register
class DCGAN(GAN):
    model_name = "dcgan"
    description = "DCGAN (Radford et al.): strided convs + batch norm, ReLU/tanh in G, LeakyReLU in D"
    arch = "conv"
    default_steps = CONV_GAN_STEPS
