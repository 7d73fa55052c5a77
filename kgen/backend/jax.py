"""JAX shell: a stateless step that threads every piece of state through each phase.

Keras's JAX trainer passes the step four lists of arrays (trainable,
non-trainable, optimizer and metric variables) and expects them back updated.
We keep one ``{id(variable): value}`` map of all of them; each phase
differentiates its loss w.r.t. its own slice (``jax.value_and_grad``) with the
rest read through a ``keras.StatelessScope``, applies its optimizer with
``stateless_apply`` and writes the new values back into the map, so the next
phase (and the next repeat) sees them. BatchNorm statistics and seed-generator
states come out of the scope as updated non-trainable values.
"""

from __future__ import annotations

from typing import Callable

import jax
import keras
from keras import StatelessScope

from kgen.backend.common import PhasedTrainerBase
from kgen.backend.precision import loss_scale


class _State:
    """Current values of a model's variables during one stateless step."""

    def __init__(self, variable_lists, value_lists):
        self.values = {}
        for variables, values in zip(variable_lists, value_lists):
            self.values.update((id(v), val) for v, val in zip(variables, values))

    def get(self, variables):
        return [self.values[id(v)] for v in variables]

    def set(self, variables, values):
        self.values.update((id(v), val) for v, val in zip(variables, values))

    def mapping(self, variables):
        return [(v, self.values[id(v)]) for v in variables]

    def collect(self, scope, variables):
        """Take the values a StatelessScope assigned to ``variables``."""
        for v in variables:
            new = scope.get_current_value(v)
            if new is not None:
                self.values[id(v)] = new


class PhasedTrainer(PhasedTrainerBase):
    def _model_variables(self):
        return self.trainable_variables + self.non_trainable_variables

    def _run_loss(self, state, phase, params, data, training):
        """Phase loss with ``params`` standing in for the phase variables."""
        mapping = state.mapping(self._model_variables())
        overrides = {id(v): p for v, p in zip(phase.variables, params)}
        mapping = [(v, overrides.get(id(v), val)) for v, val in mapping]
        with StatelessScope(state_mapping=mapping) as scope:
            loss, metrics = phase.loss(data, training)
        updates = [(v, scope.get_current_value(v)) for v in self.non_trainable_variables]
        return loss, (metrics, [(v, u) for v, u in updates if u is not None])

    def _update_trackers_stateless(self, state, phase, metrics, grads, scale=None):
        with StatelessScope(state_mapping=state.mapping(self.metrics_variables)) as scope:
            self._update_trackers(metrics)
            self._track_gradient_norm(phase, grads, scale)
        state.collect(scope, self.metrics_variables)

    def _logs(self, state, training: bool = True):
        with StatelessScope(state_mapping=state.mapping(self.metrics_variables)):
            return self._tracker_results(training)

    def train_step(self, state, data):
        trainable, non_trainable, optimizer_values, metric_values = state
        state = _State(
            [self.trainable_variables, self.non_trainable_variables, self.optimizer.variables, self.metrics_variables],
            [trainable, non_trainable, optimizer_values, metric_values],
        )
        for phase in self.phases:
            optimizer = self._optimizer_of(phase)
            scale_variable = loss_scale(optimizer)  # mixed_float16: the phase's own dynamic loss scale

            def scaled_loss(params, phase=phase, scale_variable=scale_variable):
                loss, aux = self._run_loss(state, phase, params, data, True)
                return (loss if scale_variable is None else loss * state.get([scale_variable])[0]), aux

            grad_fn = jax.value_and_grad(scaled_loss, has_aux=True)
            for _ in range(phase.repeats):
                params = state.get(phase.variables)
                scale = None if scale_variable is None else state.get([scale_variable])[0]
                (_, (metrics, updates)), grads = grad_fn(params)
                for variable, value in updates:
                    state.values[id(variable)] = value
                new_params, new_optimizer_values = optimizer.stateless_apply(
                    state.get(optimizer.variables), grads, params
                )
                state.set(phase.variables, new_params)
                state.set(optimizer.variables, new_optimizer_values)
                self._update_trackers_stateless(state, phase, metrics, grads, scale)
        iterations = self.optimizer.iterations
        state.set([iterations], [state.get([iterations])[0] + 1])
        logs = self._logs(state)
        return logs, (
            state.get(self.trainable_variables),
            state.get(self.non_trainable_variables),
            state.get(self.optimizer.variables),
            state.get(self.metrics_variables),
        )

    def test_step(self, state, data):
        trainable, non_trainable, metric_values = state
        state = _State(
            [self.trainable_variables, self.non_trainable_variables, self.metrics_variables],
            [trainable, non_trainable, metric_values],
        )
        with StatelessScope(state_mapping=state.mapping(self._model_variables() + self.metrics_variables)) as scope:
            self._evaluate_phases(data)
        state.collect(scope, self.non_trainable_variables + self.metrics_variables)
        logs = self._logs(state, training=False)
        return logs, (
            state.get(self.trainable_variables),
            state.get(self.non_trainable_variables),
            state.get(self.metrics_variables),
        )


def input_gradient(fn: Callable, x):
    """d fn(x) / dx for a scalar ``fn``; differentiable again (jax.grad composes)."""
    return jax.grad(fn)(x)


def batch_jacobian(fn, x):
    """J[b] = d fn(x)[b] / d x[b] for ``fn`` mapping a batch (B, ...) to (B, k) example by example:
    shape (B, k, ...). One forward pass, then the k vector-Jacobian products with the unit
    cotangents e_j (broadcast over the batch), vectorised; differentiable again."""
    y, pullback = jax.vjp(fn, x)
    k = y.shape[-1]
    units = jax.numpy.broadcast_to(jax.numpy.eye(k, dtype=y.dtype)[:, None, :], (k, *y.shape))
    (rows,) = jax.vmap(pullback)(units)  # (k, B, ...): rows[j, b] = d y[b, j] / d x[b]
    return jax.numpy.moveaxis(rows, 0, 1)


def conv_transpose(inputs, kernel, **options):
    """``keras.ops.conv_transpose`` with a kernel gradient XLA:CPU runs fast.

    JAX differentiates a strided transposed convolution w.r.t. its kernel as a
    convolution with lhs dilation, which XLA:CPU has no fast kernel for (about
    10x slower than the forward pass). The op T(x, w) is linear in x, so with
    D(g, w) = (dT/dx)^T g (the input gradient, an ordinary strided convolution)
    we have <g, T(x, w)> = <D(g, w), x>, hence dL/dw = (dD/dw)^T x: the kernel
    gradient of an ordinary strided convolution. Same values, ~10x less time.
    """

    def forward(x, w):
        return keras.ops.conv_transpose(x, w, **options)

    @jax.custom_vjp
    def op(x, w):
        return forward(x, w)

    def op_forward(x, w):
        return forward(x, w), (x, w)

    def op_backward(residuals, g):
        x, w = residuals

        def input_grad(w_):  # D(g, w_)
            return jax.vjp(lambda x_: forward(x_, w_), x)[1](g)[0]

        grad_x, pullback_w = jax.vjp(input_grad, w)
        return grad_x, pullback_w(x)[0]

    op.defvjp(op_forward, op_backward)
    return op(keras.ops.convert_to_tensor(inputs), keras.ops.convert_to_tensor(kernel))
