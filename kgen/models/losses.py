"""Likelihood and divergence terms shared by the models, in keras.ops.

The likelihood terms return one value per example (summed over all data
dimensions, in nats); models average over the batch. The adversarial terms
return the batch mean (they compare two batches).
"""

from __future__ import annotations

import math

import keras
from keras import ops


def _flat(*tensors):
    """(B, ...) -> (B, D). Elementwise terms are computed on flat rows: an image batch ends in a
    channel axis of size 1 for grey images, which XLA:CPU does not vectorise (about 2x slower loss and gradient)."""
    return [ops.reshape(t, (ops.shape(t)[0], -1)) for t in tensors]


def bernoulli_nll(x, logits):
    """-log Bernoulli(x | sigmoid(logits)), the binary cross-entropy.

    With log sigmoid(l) = -softplus(-l) and softplus(-l) = softplus(l) - l:
    -[x log sigmoid(l) + (1 - x) log(1 - sigmoid(l))] = softplus(l) - x*l, where every backend
    computes softplus stably (one kernel on TensorFlow and PyTorch; XLA fuses the rest).
    """
    x, logits = _flat(ops.convert_to_tensor(x), ops.convert_to_tensor(logits))
    values = ops.softplus(logits) - ops.cast(x, logits.dtype) * logits
    return ops.sum(values, axis=-1)


def gaussian_nll(x, mean, log_sigma):
    """-log N(x | mean, sigma^2) = 0.5*((x-mean)/sigma)^2 + log sigma + 0.5*log(2*pi).

    ``log_sigma``: a scalar or one value per entry of x."""
    x, mean, log_sigma = (ops.convert_to_tensor(v, "float32") for v in (x, mean, log_sigma))
    x, mean = _flat(x, mean)
    if len(ops.shape(log_sigma)) > 0:
        (log_sigma,) = _flat(log_sigma)
    values = 0.5 * ops.square((x - mean) * ops.exp(-log_sigma)) + log_sigma + 0.5 * math.log(2 * math.pi)
    return ops.sum(values, axis=-1)


def squared_error(x, x_hat):
    """||x - x_hat||^2 per example (the AE's MSE loss, summed over dimensions)."""
    x, x_hat = _flat(ops.convert_to_tensor(x), ops.convert_to_tensor(x_hat))
    return ops.sum(ops.square(x - x_hat), axis=-1)


def gaussian_kl(mean, log_var):
    """KL(N(mean, diag(exp(log_var))) || N(0, I)) in closed form.

    Kingma & Welling (2014), Appendix B: -0.5 * sum(1 + log_var - mean^2 - exp(log_var)).
    """
    mean, log_var = ops.convert_to_tensor(mean), ops.convert_to_tensor(log_var)
    return -0.5 * ops.sum(1.0 + log_var - ops.square(mean) - ops.exp(log_var), axis=-1)


def discriminator_loss(real_logits, fake_logits):
    """Minus the discriminator's value (Goodfellow et al. 2014, eq. 1), averaged over each batch:

        -E[log D(real)] - E[log(1 - D(fake))],  D = sigmoid(logit),

    in the stable form log sigmoid(l) = -softplus(-l), log(1 - sigmoid(l)) = -softplus(l).
    """
    return ops.mean(ops.softplus(-real_logits)) + ops.mean(ops.softplus(fake_logits))


def generator_loss(fake_logits, kind: str = "non-saturating"):
    """What the generator minimises: "minimax" E[log(1 - D(fake))] = -E[softplus(l)], or the
    "non-saturating" -E[log D(fake)] = E[softplus(-l)] (same fixed point, strong gradients early on)."""
    if kind == "minimax":
        return -ops.mean(ops.softplus(fake_logits))
    return ops.mean(ops.softplus(-fake_logits))


def categorical_nll(labels, logits):
    """-log softmax(logits)[label] per example, the cross-entropy with integer labels."""
    return keras.losses.sparse_categorical_crossentropy(ops.cast(labels, "int32"), logits, from_logits=True)


def accuracy(labels, logits):
    """Fraction of examples whose largest logit is their label."""
    predicted = ops.cast(ops.argmax(logits, axis=-1), "int32")
    return ops.mean(ops.cast(ops.equal(predicted, ops.cast(labels, "int32")), "float32"))
