"""beta-TCVAE (Chen et al. 2018, "Isolating Sources of Disentanglement in Variational Autoencoders").

The KL term of the ELBO, averaged over the data, splits into three (eq. 2):

    E_p(n)[KL(q(z|n) || p(z))] = I_q(z; n)                          index-code mutual information
                               + KL(q(z) || prod_j q(z_j))          total correlation (TC)
                               + sum_j KL(q(z_j) || p(z_j))         dimension-wise KL

with q(z) = 1/N sum_n q(z|n) the aggregate posterior of the N training examples. beta-TCVAE weights
them alpha, beta, gamma (eq. 4; the paper's default alpha = gamma = 1): only the total correlation,
the dependence between the code's dimensions, is pushed harder.

q(z) has no closed form; the minibatch-weighted sampling estimator (eq. 5) evaluates it at z_i, a draw
of q(z|x_i), with the M examples of the batch:

    log q(z_i)      ~ log sum_j q(z_i | x_j)      - log(N M)
    log q(z_ij)     ~ log sum_m q(z_ij | x_m)     - log(N M)      (each dimension j)

It needs N, the size of the training split: the option ``dataset_size``, filled from the data. Its
log(N M) normalisers shift the three logged estimates by constants against the batch's own mixture
(weights 1/M): the total correlation by (d - 1) log N, d the code size, the mutual information by
log N and the dimension-wise KL by -d log N. Constants leave the gradients alone.
"""

from __future__ import annotations

import math

from keras import ops

from kgen.models import losses
from kgen.models.base import Option, batch_inputs
from kgen.models.contract import register
from kgen.models.vae import VAE
from kgen.space import log_range

LOG_2PI = math.log(2.0 * math.pi)


def gaussian_log_density(z, mean, log_var):
    """log N(z; mean, exp(log_var)) elementwise."""
    return -0.5 * (LOG_2PI + log_var + ops.square(z - mean) * ops.exp(-log_var))


def kl_decomposition(z, mean, log_var, dataset_size: int):
    """(mutual information, total correlation, dimension-wise KL), each a batch mean, of codes z (B, d)
    drawn from q(z|x) = N(mean, exp(log_var)) of a batch of B examples out of ``dataset_size``, by
    minibatch-weighted sampling (eq. 5). The three add up to mean_i [log q(z_i|x_i) - log p(z_i)], the
    one-sample estimate of the KL term."""
    z, mean, log_var = (ops.convert_to_tensor(t) for t in (z, mean, log_var))  # numpy arrays too
    batch = ops.cast(ops.shape(z)[0], z.dtype)
    log_posterior = ops.sum(gaussian_log_density(z, mean, log_var), axis=1)  # log q(z_i | x_i)
    log_prior = ops.sum(gaussian_log_density(z, 0.0, 0.0), axis=1)  # log p(z_i), p = N(0, I)
    # pairs[i, j, k] = log q(z_ik | x_j): every code of the batch under every posterior of the batch.
    pairs = gaussian_log_density(z[:, None, :], mean[None, :, :], log_var[None, :, :])
    normaliser = ops.log(batch * float(dataset_size))
    log_aggregate = ops.logsumexp(ops.sum(pairs, axis=2), axis=1) - normaliser  # log q(z_i)
    log_marginals = ops.sum(ops.logsumexp(pairs, axis=1) - normaliser, axis=1)  # sum_k log q(z_ik)
    mutual_information = ops.mean(log_posterior - log_aggregate)
    total_correlation = ops.mean(log_aggregate - log_marginals)
    dimension_kl = ops.mean(log_marginals - log_prior)
    return mutual_information, total_correlation, dimension_kl


@register
class TCVAE(VAE):
    model_name = "tcvae"
    description = ("beta-TCVAE (Chen et al.): the VAE's KL split into mutual information, total correlation and "
                   "dimension-wise KL, the total correlation weighted beta")
    search_space = {**VAE.search_space, "beta": log_range(1.0, 10.0)}
    options = (
        *(o for o in VAE.options if o.name not in ("beta", "data_range")),
        Option("beta", float, 6.0, "weight of the total correlation", minimum=0.0),
        Option("alpha", float, 1.0, "weight of the index-code mutual information", minimum=0.0),
        Option("gamma", float, 1.0, "weight of the dimension-wise KL", minimum=0.0),
        Option("dataset_size", int, None, "N of the minibatch-weighted sampling estimator (default: the training "
               "split's size)", minimum=1, from_data="num_train"),
        *(o for o in VAE.options if o.name == "data_range"),
    )
    metric_names = ("loss", "reconstruction_loss", "kl_loss", "mutual_information", "total_correlation",
                    "dimension_kl")

    def __init__(self, input_shape: tuple[int, ...], **kwargs):
        super().__init__(input_shape, **kwargs)
        if self.hparams["dataset_size"] is None:
            raise ValueError("tcvae needs --dataset-size, the training split's size (kgen train fills it in)")

    def reconstruction_loss(self, data, training: bool):
        """-ELBO with the KL replaced by alpha I + beta TC + gamma dimension-wise KL (eq. 4); kl_loss logs
        the closed-form KL, so val_negative_elbo stays the beta = 1 bound of every VAE."""
        hp = self.hparams
        x = batch_inputs(data)
        mean, log_var = self.encode(x, training)
        z = self.reparameterize(mean, log_var)
        reconstruction = ops.mean(self.reconstruction_nll(x, self.decoder(z, training=training)))
        information, correlation, dimensions = kl_decomposition(z, mean, log_var, hp["dataset_size"])
        loss = reconstruction + hp["alpha"] * information + hp["beta"] * correlation + hp["gamma"] * dimensions
        return loss, {"loss": loss, "reconstruction_loss": reconstruction,
                      "kl_loss": ops.mean(losses.gaussian_kl(mean, log_var)), "mutual_information": information,
                      "total_correlation": correlation, "dimension_kl": dimensions}
