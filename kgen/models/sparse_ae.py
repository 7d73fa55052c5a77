"""Sparse autoencoder: reconstruction + a sparsity penalty Omega(h) on the code.

Two penalties (Goodfellow et al., Deep Learning, section 14.2.1):

  l1:  Omega = lambda * mean_batch sum_j |h_j|
       -- the negative log of a factorial Laplace prior on h (eq. 14.3-14.4).
  kl:  Omega = lambda * sum_j KL(rho || rho_hat_j),   rho_hat_j = mean_batch h_j
       KL(rho || q) = rho log(rho / q) + (1 - rho) log((1 - rho) / (1 - q))
       -- the target-activation penalty of Ng's "Sparse autoencoder" notes
       (sigmoid codes, so rho_hat_j is the mean firing rate of unit j).
"""

from __future__ import annotations

from keras import ops

from kgen.models.ae import AE, CODE_ACTIVATIONS
from kgen.models.contract import register
from kgen.space import AE_WIDTH, Choice, log_range
from kgen.models.base import Option, Rule


def bernoulli_kl(rho: float, rho_hat):
    """KL(Bernoulli(rho) || Bernoulli(rho_hat)), elementwise; rho_hat clipped away from 0 and 1."""
    rho_hat = ops.clip(rho_hat, 1e-6, 1.0 - 1e-6)
    return rho * ops.log(rho / rho_hat) + (1.0 - rho) * ops.log((1.0 - rho) / (1.0 - rho_hat))


@register
class SparseAE(AE):
    model_name = "sparse_ae"
    description = "sparse autoencoder: L1 (Laplace prior) or KL-to-target-activation penalty on the code"
    search_space = {"latent_dim": Choice(64, 128, 256), "hidden": AE_WIDTH, "weight": log_range(1e-3, 1.0)}
    tuning_objective = "val_reconstruction_loss"  # the loss adds lambda * penalty: not comparable across lambda
    options = (
        Option("latent_dim", int, 64, "size of the code h (may exceed the input: overcomplete)", minimum=1),
        *(o for o in AE.options if o.name in ("arch", "hidden", "loss")),
        Option("sparsity", str, "kl", "penalty: kl (target activation rho) or l1 (Laplace prior)", choices=("kl", "l1")),
        Option("weight", float, 1.0, "lambda, the penalty weight", minimum=0.0),
        Option("rho", float, 0.05, "target mean activation for --sparsity kl, in (0, 1)", minimum=0.0, maximum=1.0,
               exclusive=True),
        Option("code_activation", str, None, "code non-linearity (default: sigmoid for kl, relu for l1)",
               choices=CODE_ACTIVATIONS),
        *(o for o in AE.options if o.name == "data_range"),
    )
    rules = (Rule({"sparsity": ("kl",)}, "--sparsity kl needs sigmoid codes (a mean activation in (0, 1)); drop "
                  "--code-activation", require={"code_activation": (None, "sigmoid")}),)
    metric_names = ("loss", "reconstruction_loss", "sparsity_penalty", "mean_activation")
    regularized = True

    def __init__(self, input_shape: tuple[int, ...], **kwargs):
        super().__init__(input_shape, **kwargs)
        hp = self.hparams
        hp["code_activation"] = hp["code_activation"] or ("sigmoid" if hp["sparsity"] == "kl" else "relu")

    def regularizer(self, inputs, codes):
        hp = self.hparams
        if hp["sparsity"] == "l1":
            penalty = ops.mean(ops.sum(ops.abs(codes), axis=-1))
        else:
            penalty = ops.sum(bernoulli_kl(hp["rho"], ops.mean(codes, axis=0)))
        weighted = hp["weight"] * penalty
        return weighted, {"sparsity_penalty": weighted, "mean_activation": ops.mean(codes)}
