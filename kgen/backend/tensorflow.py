"""TensorFlow shell: one GradientTape per phase, then the phase optimizer's apply (the loop is
``PhasedTrainerBase.train_step``; this file holds TensorFlow's gradients and replicas).

Under a ``tf.distribute`` strategy Keras runs ``train_step`` once per replica, each on its slice of
the global batch. Each phase then averages its gradients and the scalars it logs over the replicas
with one ``all_reduce`` (``_replica_mean``), so every replica applies the update a single device
would compute on the whole batch, and logs the global values.
"""

from __future__ import annotations

from typing import Callable

import tensorflow as tf

from kgen.backend.common import PhasedTrainerBase
from kgen.backend.precision import loss_scale


def _replicas():
    """The replica context when the step runs on more than one replica, else None."""
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return None
    return context


def _replica_mean(context, grads: list, metrics: dict) -> tuple[list, dict]:
    """Mean over the replicas of the phase's gradients and logged scalars, in ONE all_reduce call
    (per dtype).

    With equal slices of B/R examples, the mean over replicas of per-slice mean losses is the mean
    over the global batch, and so are its gradients: (1/R) sum_r grad L_r = grad L_B.
    Gradients that are None (variables the loss does not reach) stay None, as on one device.
    """
    present = [g for g in grads if g is not None]
    names = list(metrics)
    scalars = [tf.convert_to_tensor(metrics[n]) for n in names]
    scalars = [m if m.dtype.is_floating else tf.cast(m, tf.float32) for m in scalars]
    reduced = _all_reduce_sum(context, present + scalars)
    scale = 1.0 / context.num_replicas_in_sync
    summed_grads, summed_scalars = reduced[: len(present)], reduced[len(present):]
    it = iter(summed_grads)
    mean_grads = [None if g is None else next(it) * tf.cast(scale, g.dtype) for g in grads]
    mean_metrics = {n: tf.cast(s * scale, metrics[n].dtype) for n, s in zip(names, summed_scalars)}
    return mean_grads, mean_metrics


def _all_reduce_sum(context, tensors: list) -> list:
    """Sum over the replicas: one all_reduce call per dtype present (one in plain float32 training;
    TF packs the tensors of a call into one buffer, which needs a single dtype)."""
    groups: dict = {}
    for i, t in enumerate(tensors):
        groups.setdefault(t.dtype, []).append(i)
    out = [None] * len(tensors)
    for indices in groups.values():
        summed = context.all_reduce(tf.distribute.ReduceOp.SUM, [tensors[i] for i in indices])
        for i, value in zip(indices, summed):
            out[i] = value
    return out


def _already_reduced(optimizer) -> None:
    """Stop Keras's TF optimizer from summing the gradients over the replicas again.

    ``TFOptimizer.apply`` all-reduces (SUM) the gradients it gets inside a replica context
    (``_all_reduce_sum_gradients``, keras/src/backend/tensorflow/optimizer.py) and expects a loss
    scaled by 1/R. The shell has already averaged them (together with the metrics, in one collective),
    so for the optimizers it drives that reduction becomes the identity. The variable update itself
    still runs through Keras's merge_call/``extended.update``, which keeps every mirrored copy (and the
    optimizer's slots) identical.
    """
    # A loss-scale optimizer hands the (unscaled) gradients to its inner optimizer, which would sum them.
    for opt in (optimizer, getattr(optimizer, "inner_optimizer", None)):
        if opt is not None and not getattr(opt, "_kgen_reduces_gradients", False):
            object.__setattr__(opt, "_all_reduce_sum_gradients", lambda grads_and_vars: list(grads_and_vars))
            object.__setattr__(opt, "_kgen_reduces_gradients", True)


def _for_multi_worker(logs: dict) -> dict:
    """Logs Keras 3.15.1 can reduce over MultiWorkerMirroredStrategy workers.

    Its TF trainer reduces each logged value with ``strategy.reduce("MEAN", v, axis=0)`` there, which
    fails for scalars ("Invalid reduction dimension 0 for input with 0 dimensions", tensorflow#72388).
    As a length-1 vector per replica the same call averages over the replicas and returns a scalar.
    """
    strategy = tf.distribute.get_strategy()
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and strategy.extended._in_multi_worker_mode():
        return {name: tf.reshape(value, [1]) for name, value in logs.items()}
    return logs


class PhasedTrainer(PhasedTrainerBase):
    def test_step(self, data):
        return _for_multi_worker(super().test_step(data))

    def phase_gradients(self, phase, optimizer, data):
        """A GradientTape per phase (of the scaled loss under mixed_float16); the mean over the
        replicas under a tf.distribute strategy (the optimizer then must not sum them again)."""
        context = _replicas()
        if context is not None:
            _already_reduced(optimizer)
        with tf.GradientTape() as tape:
            loss, metrics = phase.loss(data, True)
            scale = loss_scale(optimizer)
            if scale is not None:
                loss = loss * scale
        grads = tape.gradient(loss, phase.variables)
        if context is not None:
            grads, metrics = _replica_mean(context, grads, metrics)
        return grads, metrics

    def step_logs(self, logs):
        return _for_multi_worker(logs)

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        """Skip Keras's build-from-a-batch when there is nothing left to build.

        Under a tf.distribute strategy Keras's TF trainer takes a batch from the dataset at the start
        of fit()/evaluate() and MEAN-reduces it over the replicas, only to build the model
        symbolically. kgen's models are built in their constructor and ``compile`` builds every phase
        optimizer, so this does nothing for them; and the reduce fails under MultiWorkerMirroredStrategy
        with one device per worker (Keras 3.15.1: "Attempt to convert a value (PerReplica...)").
        """
        if all(layer.built for layer in self._flatten_layers()) and (self.optimizer is None or self.optimizer.built):
            return
        super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)


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
