"""Bernoulli-Bernoulli Restricted Boltzmann Machine trained by contrastive divergence.

Energy E(v, h) = -b.v - c.h - v.W.h over binary v (pixels) and h (hidden units).
Summing out h gives the free energy (Hinton, "A Practical Guide to Training
RBMs", eq. 25; Bengio, "Learning Deep Architectures for AI", eq. 5.16):

    F(v) = -b.v - sum_j softplus(c_j + v.W_j),      p(v) = exp(-F(v)) / Z

and the log-likelihood gradient is -dF(v_data)/dtheta + E_model[dF(v)/dtheta].
CD-k estimates the model expectation with v_k, k Gibbs steps from the data;
persistent CD (Tieleman, 2008) continues chains kept between batches instead
(``persistent_chains``, a non-trainable variable saved with the model). Through
the phased core this is one phase minimising

    loss = mean F(v_data) - mean F(stop_gradient(v_k))

whose gradient is exactly the CD / PCD update. Visible units are binary: each
step draws v_data ~ Bernoulli(x) from the grey levels (dynamic binarisation).

Logged: the free-energy gap (the loss), the one-step reconstruction error and
the pseudo-log-likelihood, estimated as in scikit-learn's BernoulliRBM by
flipping one random visible unit per example: D * log sigmoid(F(v~) - F(v)).
"""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import ops

from kgen.models.contract import Ability, register
from kgen.space import Choice, Range
from kgen.models.base import Option, Phase, PhasedModel, batch_inputs


@register
class RBM(PhasedModel):
    model_name = "rbm"
    description = "Bernoulli-Bernoulli RBM trained by CD-k or persistent CD; samples by Gibbs chains"
    family = "rbm"
    abilities = frozenset({Ability.RECONSTRUCT, Ability.ENCODE, Ability.DECODE, Ability.SAMPLE, Ability.PSEUDO_LIKELIHOOD,
                           Ability.ENERGY})
    search_space = {"hidden": Choice(64, 128, 256, 512), "cd_steps": Range(1, 5)}
    tuning_objective = "val_pseudo_log_likelihood"  # the CD loss is a free-energy gap, not a fit measure
    options = (
        Option("hidden", int, 256, "number of hidden units", minimum=1),
        Option("cd_steps", int, 1, "k, Gibbs steps per update (CD-k)", minimum=1),
        Option("persistent", bool, False, "persistent CD: keep the negative chains between batches"),
        Option("chains", int, 100, "number of persistent chains", minimum=1),
        Option("sample_steps", int, 1000, "Gibbs steps when sampling", minimum=1),
        Option("data_range", str, "unit", "input scaling (RBMs need [0,1])", choices=("unit",)),
    )
    metric_names = ("loss", "reconstruction_error", "pseudo_log_likelihood")

    def __init__(self, input_shape: tuple[int, ...], **kwargs):
        super().__init__(input_shape, **kwargs)
        hp = self.hparams
        self.visible = math.prod(self.data_shape)
        self.W = self.add_weight(shape=(self.visible, hp["hidden"]), name="W",
                                 initializer=keras.initializers.RandomNormal(stddev=0.01, seed=self.seed))
        self.visible_bias = self.add_weight(shape=(self.visible,), initializer="zeros", name="visible_bias")
        self.hidden_bias = self.add_weight(shape=(hp["hidden"],), initializer="zeros", name="hidden_bias")
        if hp["persistent"]:
            self.persistent_chains = self.add_weight(
                shape=(hp["chains"], self.visible), trainable=False, name="persistent_chains",
                initializer=keras.initializers.RandomUniform(0.0, 1.0, seed=self.seed))
        self.built = True

    # -- the model's conditionals ---------------------------------------------------
    def flatten(self, x):
        return ops.reshape(ops.convert_to_tensor(x, "float32"), (-1, self.visible))

    def hidden_probabilities(self, v):
        """p(h_j = 1 | v) = sigmoid(c_j + v.W_j)."""
        return ops.sigmoid(self.hidden_pre_activation(v))

    def visible_probabilities(self, h):
        """p(v_i = 1 | h) = sigmoid(b_i + W_i.h)."""
        return ops.sigmoid(ops.matmul(h, ops.transpose(self.W)) + self.visible_bias)

    def bernoulli(self, p, seed=None):
        u = keras.random.uniform(ops.shape(p), seed=self.seed_generator if seed is None else seed)
        return ops.cast(u < p, "float32")

    def gibbs_step(self, v, seed=None, hidden_probabilities=None):
        """v -> h ~ p(h|v) -> v' ~ p(v|h) (``hidden_probabilities``: p(h|v) when the caller has it)."""
        if hidden_probabilities is None:
            hidden_probabilities = self.hidden_probabilities(v)
        h = self.bernoulli(hidden_probabilities, seed)
        return self.bernoulli(self.visible_probabilities(h), seed)

    def gibbs_chain(self, v, steps: int, generator: keras.random.SeedGenerator):
        """``steps`` Gibbs steps from v as one loop op (``ops.fori_loop``), not ``steps`` copies of the
        step: a traced graph (the exported ``sample`` signature) stays small whatever ``sample_steps`` is.

        The generator's state is threaded through the loop, so the draws are exactly those of a
        Python loop of ``gibbs_step(v, generator)``, and the generator ends where that loop leaves it.
        """

        def step(_, carry):
            v, state = carry
            with keras.StatelessScope(state_mapping=[(generator.state, state)]) as scope:
                v = self.gibbs_step(v, generator)
                return v, scope.get_current_value(generator.state)

        v, state = ops.fori_loop(0, steps, step, (v, generator.state.value))
        generator.state.assign(state)
        return v

    def hidden_pre_activation(self, v):
        """c + v.W, the argument of p(h|v) and of the free energy's softplus."""
        return ops.matmul(v, self.W) + self.hidden_bias

    def free_energy(self, v, hidden_pre_activation=None):
        """F(v) = -b.v - sum_j softplus(c_j + v.W_j), per example (``hidden_pre_activation``: c + v.W
        when the caller already has it)."""
        if hidden_pre_activation is None:
            hidden_pre_activation = self.hidden_pre_activation(v)
        return -ops.matmul(v, self.visible_bias) - ops.sum(ops.softplus(hidden_pre_activation), axis=-1)

    # -- the maps the rest of kgen uses -----------------------------------------------
    def encode(self, x, training: bool = False):
        return self.hidden_probabilities(self.flatten(x))

    def decode(self, h, training: bool = False):
        """p(v | h) as images, for hidden states (or probabilities) h."""
        return ops.reshape(self.visible_probabilities(ops.convert_to_tensor(h, "float32")), (-1, *self.data_shape))

    def reconstruct(self, x, training: bool = False):
        """Mean-field reconstruction p(v | p(h | x))."""
        return self.decode(self.encode(x))

    def call(self, x, training: bool = False):
        return self.reconstruct(x)

    def sample(self, n: int, seed: int | None = None, steps: int | None = None):
        """p(v | h) after ``steps`` Gibbs steps of n chains started from uniform noise."""
        generator = keras.random.SeedGenerator(seed) if seed is not None else self.seed_generator
        v = self.bernoulli(ops.full((n, self.visible), 0.5), generator)
        v = self.gibbs_chain(v, (steps or self.hparams["sample_steps"]) - 1, generator)
        return self.decode(self.bernoulli(self.hidden_probabilities(v), generator))

    def pseudo_log_likelihood(self, v, hidden_pre_activation=None):
        """Stochastic PLL per example: D * log sigmoid(F(v with one random unit flipped) - F(v))."""
        index = keras.random.randint((ops.shape(v)[0],), 0, self.visible, seed=self.seed_generator)
        return self.visible * ops.log_sigmoid(self.flip_free_energy_gap(v, index, hidden_pre_activation))

    def flip_free_energy_gap(self, v, index, hidden_pre_activation=None):
        """F(v~) - F(v) per example, v~ = v with unit ``index[n]`` of example n flipped.

        Flipping v_i adds s = 1 - 2 v_i to it, so -b.v changes by -s b_i and the hidden
        pre-activations c + v.W by s W_i (row i of W): a gather instead of a second
        (B x D) @ (D x H) product.
        """
        if hidden_pre_activation is None:
            hidden_pre_activation = self.hidden_pre_activation(v)
        index = ops.convert_to_tensor(index, "int32")
        sign = 1.0 - 2.0 * ops.take_along_axis(v, index[:, None], axis=1)  # (B, 1)
        flipped = hidden_pre_activation + sign * ops.take(self.W, index, axis=0)
        softplus_gap = ops.sum(ops.softplus(flipped) - ops.softplus(hidden_pre_activation), axis=-1)
        return -sign[:, 0] * ops.take(self.visible_bias, index) - softplus_gap

    # -- exact quantities for small models (tests, toy problems) -------------------------
    def log_partition(self) -> float:
        """log Z by enumerating the 2^hidden hidden states (hidden <= 20):
        Z = sum_h exp(c.h) prod_i (1 + exp(b_i + W_i.h))."""
        hidden = self.hparams["hidden"]
        if hidden > 20:
            raise ValueError("log_partition enumerates 2^hidden states; use hidden <= 20")
        states = ((np.arange(2**hidden)[:, None] >> np.arange(hidden)) & 1).astype("float32")
        W, b, c = (ops.convert_to_numpy(t).astype("float64") for t in (self.W, self.visible_bias, self.hidden_bias))
        log_terms = states @ c + np.logaddexp(0.0, states @ W.T + b).sum(axis=1)
        top = log_terms.max()
        return float(top + np.log(np.exp(log_terms - top).sum()))

    def exact_log_likelihood(self, v) -> np.ndarray:
        """log p(v) = -F(v) - log Z per example (binary v; small models only)."""
        v = self.flatten(v)
        return -ops.convert_to_numpy(self.free_energy(v)).astype("float64") - self.log_partition()

    # -- training -----------------------------------------------------------------
    def contrastive_divergence(self, data, training: bool):
        v_data = self.bernoulli(self.flatten(batch_inputs(data)))
        # c + v.W of the data, computed once: F(v_data), p(h|v_data) (the first Gibbs step
        # of CD, the reconstruction) and the pseudo-likelihood all read it.
        data_pre_activation = self.hidden_pre_activation(v_data)
        h_data = ops.sigmoid(data_pre_activation)
        steps = self.hparams["cd_steps"]
        if self.hparams["persistent"]:
            v_model = ops.convert_to_tensor(self.persistent_chains)
        else:  # CD: the chain starts at the data, whose p(h|v) is h_data
            v_model = self.gibbs_step(v_data, hidden_probabilities=h_data)
            steps -= 1
        for _ in range(steps):
            v_model = self.gibbs_step(v_model)
        v_model = ops.stop_gradient(v_model)
        if self.hparams["persistent"] and training:
            self.persistent_chains.assign(v_model)
        loss = ops.mean(self.free_energy(v_data, data_pre_activation)) - ops.mean(self.free_energy(v_model))
        reconstruction = self.visible_probabilities(h_data)
        return loss, {
            "loss": loss,
            "reconstruction_error": ops.mean(ops.square(v_data - reconstruction)),
            "pseudo_log_likelihood": ops.mean(self.pseudo_log_likelihood(v_data, data_pre_activation)),
        }

    def training_phases(self) -> list[Phase]:
        return [Phase("contrastive_divergence", self.contrastive_divergence, self.trainable_variables, "rbm")]
