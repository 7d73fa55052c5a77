"""The phased model: networks + an ordered list of training phases.

A model file subclasses :class:`PhasedModel`, builds its networks in
``__init__`` and returns its phases from ``training_phases()``. The backend
shell (``kgen.backend.PhasedTrainer``) runs them in ``train_step`` and
``test_step``; nothing here names tensorflow, jax or torch.
"""

from __future__ import annotations

from typing import ClassVar

import keras

from kgen.backend import PhasedTrainer
from kgen.backend.common import Phase, PhaseOptimizers
from kgen.backend.precision import dtype_policy, needs_loss_scaling
from kgen.catalog import Option, Rule, parse_options
from kgen.models.contract import Ability

__all__ = ["DATA_BOUNDS", "DATA_RANGES", "Option", "Phase", "PhasedModel", "Rule", "ScaledRate", "batch_inputs",
           "scaled_rate"]

DATA_RANGES = ("unit", "symmetric", "real")
# (low, high) of the bounded ranges; "real" data have no bounds.
DATA_BOUNDS = {"unit": (0.0, 1.0), "symmetric": (-1.0, 1.0)}


@keras.saving.register_keras_serializable(package="kgen")
class ScaledRate(keras.optimizers.schedules.LearningRateSchedule):
    """``factor`` times a learning-rate schedule: one phase's rate under the run's --lr-schedule."""

    def __init__(self, schedule, factor: float):
        self.schedule = schedule
        self.factor = float(factor)

    def __call__(self, step):
        return self.factor * self.schedule(step)

    def get_config(self) -> dict:
        return {"schedule": keras.optimizers.schedules.serialize(self.schedule), "factor": self.factor}

    @classmethod
    def from_config(cls, config: dict) -> "ScaledRate":
        return cls(keras.optimizers.schedules.deserialize(config["schedule"]), config["factor"])


def scaled_rate(rate, factor: float):
    """``factor`` x ``rate``, where ``rate`` is a float or a Keras learning-rate schedule (a phase's
    rate relative to the run's --learning-rate and --lr-schedule)."""
    if factor == 1:
        return rate
    if isinstance(rate, keras.optimizers.schedules.LearningRateSchedule):
        return ScaledRate(rate, factor)
    return rate * factor


def batch_inputs(data):
    """The images of a batch: pipelines yield (x, label); plain arrays are x alone."""
    return data[0] if isinstance(data, (tuple, list)) else data


class PhasedModel(PhasedTrainer):
    """Base of every kgen model.

    A model file subclasses it, decorates the class with ``@register`` and declares the model's
    contract (``kgen.models.contract``): ``model_name``, ``description``, ``family``, ``abilities``
    (what it can do), ``options`` (its hyperparameters) and ``rules`` (constraints between options,
    checked with them: ``kgen.catalog``), ``search_space`` and ``tuning_objective`` (`kgen tune`'s
    defaults), ``metric_names`` (what the phases log; ``loss`` first) and ``data_range`` (the input
    scaling it wants: ``unit`` = [0, 1], ``symmetric`` = [-1, 1]); and implements ``training_phases()``.
    """

    model_name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    family: ClassVar[str] = "autoencoder"
    abilities: ClassVar[frozenset[Ability]] = frozenset()
    options: ClassVar[tuple[Option, ...]] = ()
    rules: ClassVar[tuple[Rule, ...]] = ()
    # {option or "learning_rate": kgen.space Range/Choice/Fixed/ByArch}; the learning rate is always
    # searched a decade either side of default_learning_rate unless listed here.
    search_space: ClassVar[dict] = {}
    # What `kgen tune` optimises without --objective (None: val_loss, or fid for a model without a loss).
    tuning_objective: ClassVar[str | None] = None
    # Names of the tuple encode() returns, when it returns several (the VAE: mean, log_var).
    encode_output_names: ClassVar[tuple[str, ...]] = ()
    # Training examples the model keeps with their labels (the semi-supervised AAE): `kgen train`
    # picks them, balanced per class, and hands them over with ``set_labelled`` (None: no such subset).
    labelled_examples: int | None = None
    data_range: ClassVar[str] = "unit"
    # The rate `kgen train` uses when --learning-rate is not given (GANs want smaller ones).
    default_learning_rate: ClassVar[float] = 1e-3
    # How long `kgen train` trains when --epochs is not given, in batches (optimizer steps of every
    # phase): as many epochs as this takes on the data at hand (``kgen.train.default_epochs``), so a
    # small dataset gets more passes than a large one and both a run long enough to learn.
    default_steps: ClassVar[int] = 3000

    def __init__(self, input_shape: tuple[int, ...], seed: int | None = None, **kwargs):
        super().__init__(name=kwargs.pop("name", self.model_name))
        unknown = set(kwargs) - {o.name for o in self.options}
        if unknown:
            raise TypeError(f"{type(self).__name__} got unknown options: {sorted(unknown)}")
        self.data_shape = tuple(int(d) for d in input_shape)
        self.seed = seed
        self.hparams = parse_options(self.options, self.rules, kwargs, self.model_name)
        self.seed_generator = keras.random.SeedGenerator(seed)
        self._init_trackers()

    # -- the contract ---------------------------------------------------------
    def active_abilities(self) -> frozenset[Ability]:
        """What this instance can do; models whose options change it (the AAE's modes) narrow it."""
        return frozenset(self.abilities)

    def default_objective(self) -> str:
        """What `kgen tune` optimises for this (built) model without --objective."""
        if self.tuning_objective is not None:
            return self.tuning_objective
        return "val_loss" if "loss" in self.metric_names else "fid"

    def set_labelled(self, images, labels) -> None:
        """Keep ``labelled_examples`` labelled training examples (models that declare some)."""
        raise NotImplementedError(f"model '{self.model_name}' keeps no labelled examples")

    # -- training -----------------------------------------------------------
    def training_phases(self) -> list[Phase]:
        raise NotImplementedError

    def before_training(self, dataset, learning_rate: float, steps_per_epoch: int | None = None,
                        verbose: int | str = "auto", callbacks: list | None = None) -> dict[str, float]:
        """Training that precedes the phases on a fresh run (stacked_ae: greedy layer-wise pretraining);
        ``callbacks``: what fit() needs to read ``dataset`` (kgen.train.fit_callbacks).

        Returns the figures to record in metrics.json under "pretraining"; none by default.
        """
        return {}

    def default_optimizers(self, learning_rate: float) -> dict[str, keras.optimizers.Optimizer]:
        """One Adam per optimizer key used by the phases."""
        keys = dict.fromkeys(p.optimizer for p in self.phases)
        return {key: keras.optimizers.Adam(learning_rate) for key in keys}

    def compile(self, learning_rate=None, optimizers: dict | None = None, **kwargs) -> None:
        """Give every phase its optimizer (``optimizers`` maps phase optimizer keys to optimizers).

        ``learning_rate`` (a float or a schedule) defaults to the model's ``default_learning_rate``.
        """
        learning_rate = self.default_learning_rate if learning_rate is None else learning_rate
        optimizers = optimizers or self.default_optimizers(learning_rate)
        if not isinstance(optimizers, PhaseOptimizers) and needs_loss_scaling(self):
            # float16: one dynamic loss scale per phase optimizer, so a phase whose gradients overflow
            # skips its own update and halves its own scale while the others go on.
            optimizers = {key: opt if isinstance(opt, keras.optimizers.LossScaleOptimizer)
                          else keras.optimizers.LossScaleOptimizer(opt) for key, opt in optimizers.items()}
        container = optimizers if isinstance(optimizers, PhaseOptimizers) else PhaseOptimizers(optimizers)
        self._learning_rate = learning_rate
        # Keras would wrap the container in one LossScaleOptimizer under mixed_float16; each phase has its own.
        super().compile(optimizer=container, auto_scale_loss=False, **kwargs)
        container.build_phases(self.phases)

    def get_compile_config(self) -> dict:
        return {"learning_rate": getattr(self, "_learning_rate", self.default_learning_rate)}

    def compile_from_config(self, config: dict) -> None:
        self.compile(**config)

    @property
    def phase_optimizers(self) -> dict[str, keras.optimizers.Optimizer]:
        return self.optimizer.phase_optimizers

    # -- serialization --------------------------------------------------------
    def seed_states(self) -> list:
        """The state of every random seed generator of the model and its layers (the VAE's noise, a
        GAN's z, dropout masks): Keras keeps them out of ``weights``, so a plain checkpoint would restart
        every random stream on resume."""
        weights = {id(v) for v in self.weights}
        return [v for v in self.variables if id(v) not in weights]

    def save_own_variables(self, store) -> None:
        super().save_own_variables(store)
        for i, state in enumerate(self.seed_states()):
            store[f"seed_state_{i}"] = keras.ops.convert_to_numpy(state)

    def load_own_variables(self, store) -> None:
        own = {key: store[key] for key in store.keys() if not key.startswith("seed_state_")}
        super().load_own_variables(own)
        for i, state in enumerate(self.seed_states()):
            if f"seed_state_{i}" in store:  # absent in files written before seed states were saved
                # Cast: each backend keeps seeds in its own integer type (int64 on TF, uint32 on JAX).
                value = keras.ops.convert_to_numpy(store[f"seed_state_{i}"])
                state.assign(value.astype(keras.backend.standardize_dtype(state.dtype)))

    def get_config(self) -> dict:
        config = {"input_shape": list(self.data_shape), "seed": self.seed, **self.hparams}
        if self.dtype_policy.name != "float32":  # a mixed-precision model reloads as one
            config["dtype_policy"] = self.dtype_policy.name
        return config

    @classmethod
    def from_config(cls, config: dict) -> "PhasedModel":
        config = dict(config)
        with dtype_policy(config.pop("dtype_policy", "float32")):  # every layer built under the run's policy
            return cls(**config)
