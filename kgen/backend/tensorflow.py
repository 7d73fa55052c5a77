"""TensorFlow shell: one GradientTape per phase, then the phase optimizer's apply."""

from __future__ import annotations

from typing import Callable

import tensorflow as tf

from kgen.backend.common import PhasedTrainerBase


class PhasedTrainer(PhasedTrainerBase):
    def train_step(self, data):
        for phase in self.phases:
            optimizer = self._optimizer_of(phase)
            for _ in range(phase.repeats):
                with tf.GradientTape() as tape:
                    loss, metrics = phase.loss(data, True)
                grads = tape.gradient(loss, phase.variables)
                optimizer.apply(grads, phase.variables)
                self._update_trackers(metrics)
                self._track_gradient_norm(phase, grads)
        self.optimizer.iterations.assign_add(1)
        return self._tracker_results()


def input_gradient(fn: Callable, x):
    """d fn(x) / dx for a scalar ``fn``; differentiable again (nested tape)."""
    x = tf.convert_to_tensor(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = fn(x)
    return tape.gradient(y, x)


def batch_jacobian(fn, x):
    """J[b] = d fn(x)[b] / d x[b] for ``fn`` mapping a batch (B, ...) to (B, k) example by example:
    shape (B, k, ...). Differentiable again (an outer tape records it)."""
    x = tf.convert_to_tensor(x)
    with tf.GradientTape(watch_accessed_variables=False) as tape:
        tape.watch(x)
        y = fn(x)
    return tape.batch_jacobian(y, x)
