"""The priors p(z) an adversarial autoencoder imposes on its codes (Makhzani et al. 2016, section 2).

Every sampler is written in keras.ops and draws with a Keras seed (a SeedGenerator
inside training steps, an int for reproducible draws), so it runs in the jitted step
of every backend. ``labels`` (one int per draw) select a mixture component or a
swiss-roll segment: the label-conditioned priors of the paper's section 2.3 (Figure 4).

- gaussian:   z ~ N(0, I), any dimension.
- mixture:    10 (= ``components``) 2-D Gaussians whose means lie on a circle of radius
              MIXTURE_RADIUS at angles 2*pi*k/K, each stretched along its radius (std
              MIXTURE_RADIAL_STD) and thin across it (std MIXTURE_TANGENTIAL_STD), equal weights.
- swiss-roll: a 2-D spiral r = SWISS_ROLL_RADIUS * s, theta = SWISS_ROLL_TURNS * 2*pi * s with
              s = sqrt(u), u ~ U(0, 1) (so the density along the arc is near uniform), plus
              N(0, SWISS_ROLL_NOISE^2) noise; label k takes u in [k/K, (k+1)/K).
- categorical: one-hot draws of a uniform K-way categorical (the semi-supervised and
              clustering AAE's prior on its label code y).
"""

from __future__ import annotations

import math

import keras
from keras import ops

PRIORS = ("gaussian", "mixture", "swiss-roll")
# Priors defined in two dimensions only (the paper's latent visualisations).
PLANAR_PRIORS = ("mixture", "swiss-roll")

MIXTURE_RADIUS = 2.0
MIXTURE_RADIAL_STD = 0.5
MIXTURE_TANGENTIAL_STD = 0.1
SWISS_ROLL_RADIUS = 3.0
SWISS_ROLL_TURNS = 2.0
SWISS_ROLL_NOISE = 0.05


def _component(n, components: int, labels, seed):
    """The component of each draw: ``labels`` when given, else uniform."""
    if labels is None:
        return keras.random.randint((n,), 0, components, seed=seed)
    return ops.cast(labels, "int32")


def mixture(n, components: int = 10, labels=None, seed=None):
    """n draws of the 2-D Gaussian mixture on a circle."""
    k = ops.cast(_component(n, components, labels, seed), "float32")
    eps = keras.random.normal((n, 2), seed=seed)
    radial = MIXTURE_RADIUS + MIXTURE_RADIAL_STD * eps[:, 0]
    across = MIXTURE_TANGENTIAL_STD * eps[:, 1]
    angle = 2.0 * math.pi * k / components
    cos, sin = ops.cos(angle), ops.sin(angle)
    return ops.stack([radial * cos - across * sin, radial * sin + across * cos], axis=1)


def swiss_roll(n, components: int = 10, labels=None, seed=None):
    """n draws of the noisy 2-D swiss roll; label k draws from the k-th of ``components`` segments."""
    u = keras.random.uniform((n,), seed=seed)
    if labels is not None:
        u = (ops.cast(labels, "float32") + u) / components
    s = ops.sqrt(u)
    angle = SWISS_ROLL_TURNS * 2.0 * math.pi * s
    points = ops.stack([SWISS_ROLL_RADIUS * s * ops.cos(angle), SWISS_ROLL_RADIUS * s * ops.sin(angle)], axis=1)
    return points + SWISS_ROLL_NOISE * keras.random.normal((n, 2), seed=seed)


def sample(kind: str, n, dim: int, components: int = 10, labels=None, seed=None):
    """n draws of the prior ``kind`` in ``dim`` dimensions (labels: see the module docstring)."""
    if kind == "gaussian":
        if labels is not None:
            raise ValueError("the gaussian prior has no components to condition on; use --prior mixture or swiss-roll")
        return keras.random.normal((n, dim), seed=seed)
    if kind == "mixture":
        return mixture(n, components, labels, seed)
    if kind == "swiss-roll":
        return swiss_roll(n, components, labels, seed)
    raise ValueError(f"unknown prior '{kind}'; choose one of: {', '.join(PRIORS)}")


def categorical(n, categories: int, seed=None):
    """n one-hot draws of the uniform categorical over ``categories``."""
    return ops.one_hot(keras.random.randint((n,), 0, categories, seed=seed), categories)
