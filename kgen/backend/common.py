"""Backend-neutral parts of the phased trainer, shared by the three shells."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import keras

from kgen.backend.precision import loss_scale

# A phase loss takes the batch and the training flag and returns
# (scalar loss to minimise, {metric name: scalar tensor to log}).
PhaseLoss = Callable[[Any, bool], "tuple[Any, dict[str, Any]]"]


@dataclass
class Phase:
    """One gradient step of a model's training, repeated ``repeats`` times per batch.

    ``variables`` are the only variables this phase updates, with the phase
    optimizer named ``optimizer`` (a key of ``model.phase_optimizers``).
    """

    name: str
    loss: PhaseLoss
    variables: list
    optimizer: str
    repeats: int = 1


class PhaseOptimizers(keras.optimizers.Optimizer):
    """A container holding one optimizer per phase.

    Keras threads ``model.optimizer.variables`` through the (stateless, jitted)
    JAX step and saves them with the model; by exposing every phase
    optimizer's variables here, each phase keeps its own state on every
    backend. ``iterations`` of the container counts training batches; each
    phase optimizer's own ``iterations`` counts its steps (batches x repeats).
    The container is never asked to apply gradients itself.
    """

    def __init__(self, optimizers: dict[str, keras.optimizers.Optimizer], name: str = "phase_optimizers"):
        super().__init__(learning_rate=0.0, name=name)
        self.phase_optimizers = dict(optimizers)

    def build_phases(self, phases: list[Phase]) -> None:
        if self.built:
            return
        for phase in phases:
            optimizer = self.phase_optimizers[phase.optimizer]
            if not optimizer.built:
                optimizer.build(phase.variables)
        super().build([])

    def build(self, variables):  # called by fit() when nothing built us yet
        if not self.built:
            super().build([])

    @property
    def variables(self):
        owned = self._variables[:]
        for optimizer in self.phase_optimizers.values():
            owned.extend(optimizer.variables)
        return owned

    # The phase optimizers are tracked children and save their own state;
    # the container saves only its own variables (its iteration count).
    def save_own_variables(self, store):
        for i, variable in enumerate(self._variables):
            store[str(i)] = variable.numpy()

    def load_own_variables(self, store):
        for i, variable in enumerate(self._variables):
            variable.assign(store[str(i)])

    def apply(self, grads, trainable_variables=None):
        raise RuntimeError("PhaseOptimizers is a container: apply each phase optimizer instead")

    def get_config(self):
        return {
            "name": self.name,
            "optimizers": {
                key: keras.saving.serialize_keras_object(opt) for key, opt in self.phase_optimizers.items()
            },
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        optimizers = {
            key: keras.saving.deserialize_keras_object(value, custom_objects=custom_objects)
            for key, value in config["optimizers"].items()
        }
        return cls(optimizers, name=config.get("name", "phase_optimizers"))


class PhasedTrainerBase(keras.Model):
    """What the three shells share: metric trackers, the phase loop and the no-gradient test step.

    A subclass (the model) provides ``training_phases()`` and ``metric_names``.
    """

    metric_names: tuple[str, ...] = ("loss",)

    def _init_trackers(self) -> None:
        self._trackers = {name: keras.metrics.Mean(name=name) for name in self.metric_names}

    @property
    def metrics(self):
        return list(self._trackers.values())

    @property
    def phases(self) -> list[Phase]:
        """``training_phases()``, built once (the variables never change after construction)."""
        cache = self.__dict__.get("_phase_cache")
        if cache is None:
            cache = self.training_phases()
            # Plain attribute, out of Keras's (and torch.nn.Module's) tracking.
            object.__setattr__(self, "_phase_cache", cache)
        return cache

    def _optimizer_of(self, phase: Phase) -> keras.optimizers.Optimizer:
        return self.optimizer.phase_optimizers[phase.optimizer]

    def _update_trackers(self, metrics: dict) -> None:
        for name, value in metrics.items():
            self._trackers[name].update_state(value)

    def _track_gradient_norm(self, phase: Phase, grads, scale=None) -> None:
        """Log ``<phase>_grad_norm`` (the global L2 norm of the phase's gradients) when the model asks
        for it; ``scale``: the loss scale the gradients carry (mixed_float16), divided out."""
        name = f"{phase.name}_grad_norm"
        if name in self._trackers:
            norm = keras.ops.sqrt(sum(keras.ops.sum(keras.ops.square(keras.ops.cast(g, "float32")))
                                      for g in grads if g is not None))
            self._trackers[name].update_state(norm if scale is None else norm / scale)

    # -- the step of the TensorFlow and PyTorch shells (JAX's is stateless: its own) ----------
    def train_step(self, data):
        """Every phase in order, ``repeats`` times each: the phase's gradients of its own variables
        (``phase_gradients``: the backend's autodiff, the loss scale of a float16 optimizer, the mean
        over replicas when distributed), then its optimizer's update (``apply_phase``)."""
        for phase in self.phases:
            optimizer = self._optimizer_of(phase)
            for _ in range(phase.repeats):
                grads, metrics = self.phase_gradients(phase, optimizer, data)
                self.apply_phase(optimizer, grads, phase.variables)
                self._update_trackers(metrics)
                self._track_gradient_norm(phase, grads, loss_scale(optimizer))
        self.count_batch()
        return self.step_logs(self._tracker_results())

    def phase_gradients(self, phase: Phase, optimizer, data) -> tuple[list, dict]:
        """(gradients of the phase's loss w.r.t. ``phase.variables``, the metrics it logs)."""
        raise NotImplementedError

    def apply_phase(self, optimizer, grads: list, variables: list) -> None:
        optimizer.apply(grads, variables)

    def count_batch(self) -> None:
        """The container's iterations count training batches (each phase optimizer counts its steps)."""
        self.optimizer.iterations.assign_add(1)

    def step_logs(self, logs: dict) -> dict:
        return logs

    def _tracker_results(self, training: bool = True) -> dict:
        """Tracker values; gradient norms only exist in training (test steps take no gradients)."""
        return {name: tracker.result() for name, tracker in self._trackers.items()
                if training or not name.endswith("_grad_norm")}

    def _evaluate_phases(self, data) -> None:
        """Each phase's loss and metrics without gradients (validation / evaluate)."""
        for phase in self.phases:
            _, metrics = phase.loss(data, False)
            self._update_trackers(metrics)

    def test_step(self, data):
        """TF and torch (which already runs it under no_grad); the JAX shell overrides it."""
        self._evaluate_phases(data)
        return self._tracker_results(training=False)
