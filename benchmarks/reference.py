"""The same-framework bar: a hand-written Keras ``train_step`` on each backend, shared by every family.

kgen's phased core is judged against what a Keras user writes by hand for the same networks on the
same backend, following Keras's own guides ("Customizing what happens in fit()" for TensorFlow, JAX
and PyTorch), with one optimizer and one loss per phase:

  tensorflow  ``train_step(data)``: per phase a ``tf.GradientTape``, ``tape.gradient`` w.r.t. the
              phase's networks, its optimizer's ``apply`` (keras-io's GAN/VAE pattern).
  jax         ``train_step(state, data)``: per phase ``jax.value_and_grad`` of
              ``compute_loss_and_updates`` (the model's ``stateless_call`` with the phase's
              weights substituted; the call returns the phase loss) and the optimizer's
              ``stateless_apply``; non-trainable values (batch norm, seed state) threaded through.
  torch       ``train_step(data)``: per phase the phase's gradients cleared, ``loss.backward``
              into that phase's weights, ``optimizer.apply(gradients, weights)`` under
              ``torch.no_grad()``.

A family provides the networks (plain ``keras.layers``), its phases (``Phase``: a loss written in
``keras.ops`` once, run unchanged by the three train_steps) and one optimizer per phase; this
module builds the backend's model, compiles it with kgen's compile options for that backend
(jit_compile, steps_per_execution: the comparison is about the step), times ``fit()`` and checks
that every phase's optimizer took its steps. Each phase logs its loss through a ``Mean`` tracker,
as keras-io's examples do. Under a mixed dtype policy (``harness.dtype_policy``) the networks'
outputs are cast to float32 before the losses (Keras's mixed-precision guide), and under
``mixed_float16`` every phase optimizer is a ``LossScaleOptimizer`` whose scale multiplies the loss.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import harness
import keras


@dataclass(frozen=True)
class Phase:
    """One gradient step per batch (``repeats`` of them) of the networks named in ``networks``.

    ``loss(model, data)`` returns the scalar loss in keras.ops (``model.net(name, x)`` runs a
    network in training mode, ``model.seed_generator`` draws noise); with ``closed_form`` it returns
    ``(loss, gradients)`` itself (the RBM's CD-1), and no autodiff runs."""

    optimizer: str  # the phase's name: its optimizer's key and its tracker's "<name>_loss"
    networks: tuple
    loss: Callable
    repeats: int = 1
    closed_form: bool = False


class Optimizers(keras.optimizers.Optimizer):
    """One optimizer per phase behind ``model.optimizer``: Keras's JAX trainer threads
    ``model.optimizer.variables`` through its jitted step, so those are every phase optimizer's."""

    def __init__(self, optimizers: dict):
        super().__init__(learning_rate=0.0, name="phase_optimizers")
        self.optimizers = dict(optimizers)

    def build(self, variables=None):
        if not self.built:
            super().build([])

    @property
    def variables(self):
        return self._variables[:] + [v for opt in self.optimizers.values() for v in opt.variables]


def _float32(outputs):
    return keras.tree.map_structure(lambda t: keras.ops.cast(t, "float32"), outputs)


class ReferenceBase(keras.Model):
    """What the three train_steps share: the networks, the phases, the loss trackers."""

    def __init__(self, networks: dict, phases: list[Phase], seed: int = 1337):
        super().__init__()
        self.networks = networks
        self.phase_list = tuple(phases)
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.trackers = {p.optimizer: keras.metrics.Mean(name=f"{p.optimizer}_loss") for p in phases}

    @property
    def metrics(self):
        return list(self.trackers.values())

    def net(self, name: str, x, training: bool = True):
        """A network in training mode; float32 outputs (the losses' dtype under a mixed policy)."""
        return _float32(self.networks[name](x, training=training))

    def variables_of(self, phase: Phase) -> list:
        return [v for n in phase.networks for v in self.networks[n].trainable_variables]

    def call(self, data, phase: Phase | None = None, training: bool | None = None):
        """The phase's loss (JAX's stateless_call runs it); without a phase, nothing to infer."""
        return phase.loss(self, data) if phase is not None else data

    def logs(self):
        return {tracker.name: tracker.result() for tracker in self.trackers.values()}


class TensorFlowReference(ReferenceBase):
    def train_step(self, data):
        import tensorflow as tf

        for phase in self.phase_list:
            optimizer, variables = self.optimizer.optimizers[phase.optimizer], self.variables_of(phase)
            for _ in range(phase.repeats):
                if phase.closed_form:
                    loss, grads = phase.loss(self, data)
                else:
                    with tf.GradientTape() as tape:
                        loss = phase.loss(self, data)
                        scaled = optimizer.scale_loss(loss)
                    grads = tape.gradient(scaled, variables)
                optimizer.apply(grads, variables)
            self.trackers[phase.optimizer].update_state(loss)
        return self.logs()


class JaxReference(ReferenceBase):
    def _slots(self):
        """Positions of each phase's weights in trainable_variables and of its optimizer's variables in
        model.optimizer.variables (by identity; == on Keras variables compares values)."""
        if "_slot_cache" not in self.__dict__:
            trainable = {id(v): i for i, v in enumerate(self.trainable_variables)}
            optimizer_vars = {id(v): i for i, v in enumerate(self.optimizer.variables)}
            slots = {p.optimizer: ([trainable[id(v)] for v in self.variables_of(p)],
                                   [optimizer_vars[id(v)] for v in self.optimizer.optimizers[p.optimizer].variables])
                     for p in self.phase_list}
            object.__setattr__(self, "_slot_cache", slots)
        return self.__dict__["_slot_cache"]

    def compute_loss_and_updates(self, phase_values, trainable, non_trainable, data, phase, scale):
        trainable = list(trainable)
        for i, value in zip(self._slots()[phase.optimizer][0], phase_values):
            trainable[i] = value
        loss, non_trainable = self.stateless_call(trainable, non_trainable, data, phase=phase, training=True)
        return loss * scale, (loss, non_trainable)

    def train_step(self, state, data):
        import jax

        trainable, non_trainable, optimizer_values, metric_values = state
        trainable, optimizer_values = list(trainable), list(optimizer_values)
        losses = {}
        for phase in self.phase_list:
            optimizer = self.optimizer.optimizers[phase.optimizer]
            weight_slots, optimizer_slots = self._slots()[phase.optimizer]
            for _ in range(phase.repeats):
                own = [trainable[i] for i in weight_slots]
                own_optimizer = [optimizer_values[i] for i in optimizer_slots]
                if phase.closed_form:
                    (loss, grads), non_trainable = self.stateless_call(trainable, non_trainable, data, phase=phase,
                                                                       training=True)
                else:
                    with keras.StatelessScope(state_mapping=list(zip(optimizer.variables, own_optimizer))):
                        scale = optimizer.scale_loss(1.0)  # LossScaleOptimizer's current scale; else 1
                    grad_fn = jax.value_and_grad(self.compute_loss_and_updates, has_aux=True)
                    (_, (loss, non_trainable)), grads = grad_fn(own, trainable, non_trainable, data, phase, scale)
                own, own_optimizer = optimizer.stateless_apply(own_optimizer, grads, own)
                for i, value in zip(weight_slots, own):
                    trainable[i] = value
                for i, value in zip(optimizer_slots, own_optimizer):
                    optimizer_values[i] = value
            losses[phase.optimizer] = loss
        logs, new_metric_values, start = {}, [], 0
        for phase in self.phase_list:
            tracker = self.trackers[phase.optimizer]
            values = metric_values[start : start + len(tracker.variables)]
            start += len(tracker.variables)
            values = tracker.stateless_update_state(values, losses[phase.optimizer])
            logs[tracker.name] = tracker.stateless_result(values)
            new_metric_values += values
        return logs, (trainable, non_trainable, optimizer_values, new_metric_values)


class TorchReference(ReferenceBase):
    def train_step(self, data):
        import torch

        for phase in self.phase_list:
            optimizer, variables = self.optimizer.optimizers[phase.optimizer], self.variables_of(phase)
            for _ in range(phase.repeats):
                if phase.closed_form:
                    with torch.no_grad():
                        loss, grads = phase.loss(self, data)
                else:
                    # Keras's guide calls self.zero_grad() and loss.backward(); with several phases, the
                    # phase's own weights are cleared and receive the gradients.
                    for v in variables:
                        v.value.grad = None
                    loss = phase.loss(self, data)
                    optimizer.scale_loss(loss).backward(inputs=[v.value for v in variables])
                    grads = [v.value.grad for v in variables]
                with torch.no_grad():
                    optimizer.apply(grads, variables)
            self.trackers[phase.optimizer].update_state(loss.detach())
        return self.logs()


CLASSES = {"tensorflow": TensorFlowReference, "jax": JaxReference, "torch": TorchReference}


def build(networks: Callable[[], dict], phases: list[Phase], optimizers: Callable[[], dict], steps: int,
          warmup: int, jit: bool | None = None, keras_io: bool = False):
    """The backend's reference model for ``networks()`` (built under the run's dtype policy), compiled
    with one optimizer per phase (``optimizers()``: {phase name: optimizer}) and kgen's compile options
    for fits of ``warmup`` and ``steps`` steps; ``keras_io``: with Keras's default compile options instead
    (as keras-io's examples compile), in float32."""
    from kgen.train import compile_options

    options = {} if keras_io else compile_options(jit, steps=(warmup, steps))
    with harness.dtype_policy("float32" if keras_io else None):
        model = CLASSES[keras.backend.backend()](networks(), phases)
        chosen = optimizers()
        if harness.precision() == "mixed_float16":
            chosen = {key: keras.optimizers.LossScaleOptimizer(opt) for key, opt in chosen.items()}
        for phase in phases:
            chosen[phase.optimizer].build(model.variables_of(phase))
        model.compile(optimizer=Optimizers(chosen), auto_scale_loss=False, **options)
    return model


def check(model, steps: int, warmup: int) -> None:
    """Fail the measurement unless every phase's optimizer took (warm-up + timed) x repeats steps and
    the last logged losses are finite."""
    for phase in model.phase_list:
        optimizer = model.optimizer.optimizers[phase.optimizer]
        inner = getattr(optimizer, "inner_optimizer", optimizer)
        took, expected = int(keras.ops.convert_to_numpy(inner.iterations)), (warmup + steps) * phase.repeats
        # a LossScaleOptimizer skips the steps whose scaled gradients overflowed (mixed_float16)
        if took != expected and not (inner is not optimizer and 0 < took <= expected):
            raise RuntimeError(f"reference: phase {phase.optimizer} took {took} steps, expected {expected}")
    for name, value in model.logs().items():
        if not math.isfinite(float(keras.ops.convert_to_numpy(value))):
            raise RuntimeError(f"reference: {name} is not finite")


def fit(networks, phases, optimizers, dataset, steps: int, warmup: int, jit: bool | None = None,
        keras_io: bool = False) -> float:
    """samples/s of the reference's ``fit()`` over ``steps`` batches of ``dataset`` after ``warmup``, checked."""
    model = build(networks, phases, optimizers, steps, warmup, jit, keras_io)
    rate = harness.time_fit(model, dataset, steps, warmup)
    check(model, steps, warmup)
    return rate


# -- derivatives inside a loss, on each backend (differentiable again: the outer step takes their gradient) --
def input_gradient(fn: Callable, x):
    """d fn(x) / dx for a scalar ``fn`` (WGAN-GP's penalty)."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            tape.watch(x)
            y = fn(x)
        return tape.gradient(y, x)
    if backend == "jax":
        import jax

        return jax.grad(fn)(x)
    import torch

    x = x.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(fn(x), x, create_graph=True)
    return grad


def value_and_batch_jacobian(fn: Callable, x):
    """``fn(x)`` (B, k) and its per-example Jacobian J[b] = d fn(x)[b] / d x[b], shape (B, k, ...), by each
    framework's own means: tape.batch_jacobian, vmap of vjp over the k unit cotangents, torch's batched
    backward (``is_grads_batched``)."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch(x)
            y = fn(x)
        return y, tape.batch_jacobian(y, x)
    if backend == "jax":
        import jax
        import jax.numpy as jnp

        y, pullback = jax.vjp(fn, x)
        k = y.shape[-1]
        units = jnp.broadcast_to(jnp.eye(k, dtype=y.dtype)[:, None, :], (k, *y.shape))
        (rows,) = jax.vmap(pullback)(units)
        return y, jnp.moveaxis(rows, 0, 1)
    import torch

    x = x.detach().requires_grad_(True)
    y = fn(x)
    k = y.shape[-1]
    units = torch.eye(k, dtype=y.dtype, device=y.device)[:, None, :].expand(k, *y.shape)
    (rows,) = torch.autograd.grad(y, x, grad_outputs=units, is_grads_batched=True, create_graph=True)
    return y, rows.movedim(0, 1)
