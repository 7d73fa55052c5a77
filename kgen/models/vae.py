"""Variational autoencoder (Kingma & Welling, 2014).

Encoder q(z|x) = N(mu(x), diag(exp(log_var(x)))); decoder p(x|z) Bernoulli
(default, data in [0,1]) or Gaussian with a learned global scale sigma (a
"calibrated decoder", Rybkin et al. 2021). One phase minimises the negative
beta-ELBO (eq. 10 of the paper, beta=1):

    loss = E_q[-log p(x|z)] + beta * KL(q(z|x) || N(0, I))

with one reparameterised sample z = mu + sigma * eps, eps ~ N(0, I) (eq. 4 ff.),
and the KL in closed form (Appendix B).
"""

from __future__ import annotations

import keras
from keras import ops

from kgen.models import losses
from kgen.models.ae import AE
from kgen.models.contract import Ability, register
from kgen.space import AE_WIDTH, Choice, log_range
from kgen.models.base import Option, batch_inputs


@register
class VAE(AE):
    model_name = "vae"
    description = "variational autoencoder: Gaussian encoder, Bernoulli or Gaussian decoder, beta-weighted KL"
    abilities = frozenset({Ability.RECONSTRUCT, Ability.ENCODE, Ability.DECODE, Ability.GENERATE, Ability.SAMPLE,
                           Ability.VARIATIONAL})
    search_space = {"latent_dim": Choice(2, 8, 16, 32), "hidden": AE_WIDTH, "beta": log_range(0.25, 4.0)}
    tuning_objective = "val_negative_elbo"  # comparable across beta: the bound at beta = 1
    options = (
        Option("latent_dim", int, 2, "size of z", minimum=1),
        *(o for o in AE.options if o.name in ("arch", "hidden")),
        Option("beta", float, 1.0, "weight of the KL term (beta-VAE)", minimum=0.0),
        Option("decoder", str, "bernoulli", "likelihood p(x|z)", choices=("bernoulli", "gaussian")),
        *(o for o in AE.options if o.name == "data_range"),
    )
    metric_names = ("loss", "reconstruction_loss", "kl_loss")
    regularized = True  # the KL term
    # PyTorch's nn.Linear start (uniform +-1/sqrt(fan_in), biases too), not Keras's Glorot: about half a nat
    # better after 50 epochs on the 4,500 bundled digits, chosen on a validation split (docs/reproduction.md).
    network_init = "fan_in"
    encode_output_names = ("mean", "log_var")  # what encode() returns, by name (kgen export's outputs)

    def __init__(self, input_shape: tuple[int, ...], **kwargs):
        super().__init__(input_shape, **kwargs)
        if self.loss_kind == "gaussian":
            # log sigma of p(x|z) = N(decoded mean, sigma^2 I), learned with the rest.
            self.log_sigma = self.add_weight(shape=(), initializer="zeros", name="decoder_log_sigma")

    def choose_loss(self) -> str:
        if self.hparams["decoder"] == "bernoulli" and self.hparams["data_range"] != "unit":
            raise ValueError("the Bernoulli decoder needs data in [0, 1]; use --decoder gaussian")
        return self.hparams["decoder"]

    def encoder_outputs(self) -> int:
        return 2 * self.latent_dim  # mean and log-variance

    def encode(self, x, training: bool = False):
        """Returns (mean, log_var) of q(z|x)."""
        h = self.encoder(x, training=training)
        return h[:, : self.latent_dim], h[:, self.latent_dim :]

    def reparameterize(self, mean, log_var):
        eps = keras.random.normal(ops.shape(mean), seed=self.seed_generator)
        return mean + ops.exp(0.5 * log_var) * eps

    def reconstruct(self, x, training: bool = False):
        mean, _ = self.encode(x, training)
        return self.decode(mean, training)

    def sample_latent(self, n: int, seed: int | None = None):
        """z ~ N(0, I), the prior; ``seed`` makes the draw reproducible."""
        return keras.random.normal((n, self.latent_dim), seed=seed if seed is not None else self.seed_generator)

    def generate(self, latent, condition=None):
        """The decoder mean at given latents (the VAE is unconditional: ``condition`` must be None)."""
        return self.decode(latent)

    def sample(self, n: int, seed: int | None = None):
        """n draws of the decoder mean at z ~ N(0, I); ``seed`` makes them reproducible."""
        return self.generate(self.sample_latent(n, seed))

    def reconstruction_nll(self, x, logits):
        if self.loss_kind == "bernoulli":
            return losses.bernoulli_nll(x, logits)
        return losses.gaussian_nll(x, self.output_activation(logits), self.log_sigma)

    def reconstruction_loss(self, data, training: bool):
        x = batch_inputs(data)
        mean, log_var = self.encode(x, training)
        z = self.reparameterize(mean, log_var)
        logits = self.decoder(z, training=training)
        reconstruction = ops.mean(self.reconstruction_nll(x, logits))
        kl = ops.mean(losses.gaussian_kl(mean, log_var))
        loss = reconstruction + self.hparams["beta"] * kl
        return loss, {"loss": loss, "reconstruction_loss": reconstruction, "kl_loss": kl}
