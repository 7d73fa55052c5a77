"""`kgen train` as a library function: config -> data -> model -> fit -> run directory."""

from __future__ import annotations

import math
import sys
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import keras
import numpy as np

import kgen
from kgen import callbacks as kgen_callbacks
from kgen import data as kgen_data
from kgen.models import get_model_class
from kgen.runs import Run, RunError, create_run_dir

# jit_compile per backend when the user does not choose (see benchmarks/train_throughput.py).
DEFAULT_JIT = {"tensorflow": False, "jax": True, "torch": False}
# Training steps per call of the compiled step function: TensorFlow runs them as a
# loop inside one graph, JAX in one Python call without per-step callbacks; both
# save the per-step overhead of fit() that dominates small networks
# (benchmarks/train_throughput.py --suite ae-family). Keras's torch trainer only runs 1.
DEFAULT_STEPS_PER_EXECUTION = {"tensorflow": 32, "jax": 32, "torch": 1}


LR_SCHEDULES = ("constant", "cosine")
# Samples (and held-out images) behind the FID logged during training with --eval-every.
EVAL_SAMPLES = 2000
# Indices (into the training split) and labels of a semi-supervised run's labelled examples.
LABELLED_FILE = "labelled.npz"


def learning_rate(config: "TrainConfig", num_train: int | None):
    """The optimizers' learning rate: constant, or cosine decay from --learning-rate to 1% of it
    over all training steps (Loshchilov & Hutter 2017, without restarts)."""
    if config.lr_schedule == "constant":
        return config.learning_rate
    steps_per_epoch = config.steps_per_epoch or math.ceil((num_train or 1) / config.batch_size)
    return keras.optimizers.schedules.CosineDecay(config.learning_rate, config.epochs * steps_per_epoch, alpha=0.01)


def compile_options(jit: bool | None = None, steps_per_execution: int | None = None,
                    steps: tuple[int | None, ...] = ()) -> dict:
    """``model.compile`` keywords: the user's choice, else the fastest measured for this backend.

    ``steps`` are the fixed step counts fit() will run (steps per epoch, validation steps): an
    execution must not run past them, so the default becomes the largest divisor of all of them.
    """
    backend = keras.backend.backend()
    if steps_per_execution is None:
        fixed = [n for n in steps if n]
        steps_per_execution = max(d for d in range(1, DEFAULT_STEPS_PER_EXECUTION[backend] + 1)
                                  if all(n % d == 0 for n in fixed))
    return {"jit_compile": DEFAULT_JIT[backend] if jit is None else jit, "steps_per_execution": steps_per_execution}


class TrainingDiverged(RuntimeError):
    """The loss became NaN/inf; the run keeps its last good checkpoint."""


@dataclass
class TrainConfig:
    """Everything that defines a training run; saved as the run's config.json."""

    model: str
    dataset: str = "mnist"
    data_dir: str | None = None
    epochs: int = 10
    batch_size: int = 128
    learning_rate: float | None = None  # None: the model's default_learning_rate
    steps_per_epoch: int | None = None
    validation_steps: int | None = None
    seed: int = 0
    binarize: bool = False
    lr_schedule: str = "constant"
    jit: bool | None = None
    steps_per_execution: int | None = None
    eval_every: int | None = None  # epochs between FID/KID evaluations during training
    classifier: str | None = None  # the classifier run that judges samples (default: the newest on the dataset)
    model_options: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        """Raise ValueError with a user-facing message for impossible settings."""
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        for name in ("steps_per_epoch", "validation_steps", "steps_per_execution", "eval_every"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
        if keras.backend.backend() == "torch" and self.steps_per_execution not in (None, 1):
            raise ValueError("--steps-per-execution must be 1 on the torch backend (Keras runs one step per call there)")
        for name in ("steps_per_epoch", "validation_steps"):
            value = getattr(self, name)
            if self.steps_per_execution and value and value % self.steps_per_execution:
                raise ValueError(f"--steps-per-execution {self.steps_per_execution} must divide "
                                 f"--{name.replace('_', '-')} {value}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"--lr-schedule must be one of {', '.join(LR_SCHEDULES)}, got '{self.lr_schedule}'")
        cls = get_model_class(self.model)
        if self.eval_every and not hasattr(cls, "sample"):
            raise ValueError(f"--eval-every measures samples; model '{self.model}' cannot sample")
        if self.classifier is not None and not self.eval_every:
            raise ValueError("--classifier is used with --eval-every N (FID during training)")
        if self.learning_rate is None:
            self.learning_rate = cls.default_learning_rate
        if not self.learning_rate > 0:
            raise ValueError(f"--learning-rate must be > 0, got {self.learning_rate}")
        options = {o.name: o for o in cls.options}
        for name, value in self.model_options.items():
            if name not in options or name == "data_range":
                valid = ", ".join("--" + o.replace("_", "-") for o in options if o != "data_range")
                raise ValueError(f"model '{self.model}' has no option --{name.replace('_', '-')}; its options: {valid}")
            self.model_options[name] = options[name].parse(value)

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known - {"backend", "kgen_version", "data_source", "data_range", "input_shape"}
        if unknown:
            raise ValueError(f"unknown keys in config: {', '.join(sorted(unknown))}")
        return cls(**{k: v for k, v in data.items() if k in known})


def build_model(config: TrainConfig, input_shape, data_range: str, num_train: int | None = None,
                num_classes: int | None = None):
    """The model of a run, compiled; ``num_classes`` (the dataset's) fills a model's --num-classes when not given."""
    cls = get_model_class(config.model)
    options = dict(config.model_options)
    if any(o.name == "num_classes" for o in cls.options) and options.get("num_classes") is None:
        options["num_classes"] = num_classes
    model = cls(tuple(input_shape), seed=config.seed, data_range=data_range, **options)
    model.compile(learning_rate=learning_rate(config, num_train), **compile_options(
        config.jit, config.steps_per_execution, (config.steps_per_epoch, config.validation_steps)))
    return model


def load_data(config: TrainConfig) -> tuple[kgen_data.Dataset, str]:
    """The run's dataset and how its inputs are scaled for the model (``data_range``)."""
    data = kgen_data.load_dataset(config.dataset, config.data_dir)
    return data, kgen_data.data_range_for(data, get_model_class(config.model).data_range)


def grid_arrays(data, data_range: str, n: int = 1000) -> tuple:
    """Held-out images and labels for ImageGrids: the first 16 are drawn, all n are projected as codes."""
    source = data.test if data.test is not None else data.train
    batch = kgen_data.pipeline(source.take(n), n, data_range, data.dtype, shuffle=False)
    return tuple(t.numpy() for t in next(iter(batch)))


def pipelines(config: TrainConfig, data, data_range: str):
    """The training batches (repeated when --steps-per-epoch is set, shuffled with the run's seed)
    and the test batches (None without a test split)."""
    train = kgen_data.pipeline(
        data.train, config.batch_size, data_range, data.dtype, binarize=config.binarize,
        repeat=config.steps_per_epoch is not None, seed=config.seed,
    )
    test = None
    if data.test is not None:
        test = kgen_data.pipeline(data.test, config.batch_size, data_range, data.dtype, binarize=config.binarize, shuffle=False)
    return train, test


def train(
    config: TrainConfig | None = None,
    run_dir: str | None = None,
    resume: str | None = None,
    runs_root: str | Path = "runs",
    verbose: int | str = "auto",
    extra_callbacks: list | None = None,
) -> Run:
    """Train a model and return its run. ``resume`` continues a run from its last checkpoint.

    When resuming, ``config`` may raise ``epochs``; everything else comes from the run.
    """
    if resume is not None:
        run = Run.open(resume)
        saved = run.config()
        resumed = TrainConfig.from_dict(saved)
        if config is not None:
            resumed.epochs = config.epochs
        config = resumed
        checkpoint = run.latest_checkpoint()
        initial_epoch = checkpoint[0] if checkpoint else 0
        if initial_epoch >= config.epochs:
            print(f"[kgen] {run.path} already completed {initial_epoch} of {config.epochs} epochs; "
                  "pass a larger --epochs to continue", file=sys.stderr)
            return run
    config.validate()
    keras.utils.set_random_seed(config.seed)
    data, data_range = load_data(config)
    model = build_model(config, data.shape, data_range, data.num_train, data.num_classes)
    labelled = None
    if resume is None and getattr(model, "labelled_examples", None):
        # The semi-supervised model's labelled examples, balanced per class with the run's seed;
        # kept in the model (so resume and model.keras have them) and their indices in the run.
        labelled = kgen_data.labelled_subset(data.train, model.labelled_examples, data.num_classes, data_range,
                                             data.dtype, seed=config.seed)
        model.set_labelled(*labelled[1:])

    if resume is None:
        run = Run(create_run_dir(config.model, config.dataset, run_dir, runs_root))
        initial_epoch, checkpoint = 0, None
        run.write_config({
            **asdict(config), "backend": keras.backend.backend(), "kgen_version": kgen.__version__,
            "data_source": data.source, "data_range": data_range, "input_shape": list(data.shape),
        })
        if labelled is not None:
            np.savez(run.path / LABELLED_FILE, indices=labelled[0], labels=labelled[2])
    elif checkpoint is not None:
        model.load_weights(checkpoint[1])
        print(f"[kgen] resuming {run.path} after epoch {initial_epoch}", file=sys.stderr)

    train_ds, test_ds = pipelines(config, data, data_range)
    if resume is None:
        pretraining = model.before_training(train_ds, config.learning_rate, config.steps_per_epoch, verbose)
        if pretraining:
            run.record(pretraining, "pretraining")
    grid_inputs, grid_labels = grid_arrays(data, data_range)
    nan_guard = kgen_callbacks.NaNGuard()
    callbacks = [
        nan_guard,
        *sample_quality_callbacks(config, run, model, data),
        kgen_callbacks.Checkpoint(run, nan_guard),
        keras.callbacks.TensorBoard(log_dir=str(run.log_dir), write_graph=False),
        kgen_callbacks.ImageGrids(run.log_dir / "images", run.samples_dir, inputs=grid_inputs, labels=grid_labels,
                                  nan_guard=nan_guard),
        *(extra_callbacks or []),
    ]
    model.fit(
        train_ds,
        epochs=config.epochs,
        initial_epoch=initial_epoch,
        steps_per_epoch=config.steps_per_epoch,
        validation_data=test_ds,
        validation_steps=config.validation_steps,
        callbacks=callbacks,
        shuffle=False,  # the tf.data pipeline shuffles
        verbose=verbose,
    )
    if nan_guard.failed_at is not None:
        epoch, batch = nan_guard.failed_at
        last = run.latest_checkpoint()
        kept = f"the last good checkpoint (epoch {last[0]}) is kept" if last else "no epoch completed, nothing was saved"
        raise TrainingDiverged(
            f"loss became NaN/inf in epoch {epoch}" + (f", batch {batch}" if batch else "")
            + f"; training stopped, {kept} in {run.path}; try a lower --learning-rate"
        )
    if test_ds is not None:
        results = model.evaluate(test_ds, steps=config.validation_steps, verbose=0, return_dict=True)
        run.record(results, "final")
    return run


def sample_quality_callbacks(config: TrainConfig, run: Run, model, data) -> list:
    """With --eval-every N: the callback logging FID/KID/classifier score every N epochs."""
    if not config.eval_every:
        return []
    from kgen.evaluate import find_classifier

    classifier_run = find_classifier(run, config.classifier)
    print(f"[kgen] FID every {config.eval_every} epochs, judged by {classifier_run.path}", file=sys.stderr)
    return [sample_quality_callback(classifier_run, model, data, config.eval_every, config.seed)]


def sample_quality_callback(classifier_run: Run, model, data, every: int = 1, seed: int = 0,
                            n: int = EVAL_SAMPLES) -> kgen_callbacks.SampleQuality:
    """The callback adding FID/KID/classifier score of ``n`` samples of ``model`` to the logs every
    ``every`` epochs, judged by ``classifier_run`` against ``n`` held-out images of ``data``."""
    from kgen.evaluate import dataset_arrays
    from kgen.metrics import rescale
    from kgen.metrics.report import check_compatible

    judge = load_model(classifier_run)
    check_compatible(model, judge)
    data_range = model.hparams["data_range"]
    real, _ = dataset_arrays(data, "test" if data.test is not None else "train", data_range, n)
    real = rescale(real, data_range, judge.hparams["data_range"])
    return kgen_callbacks.SampleQuality(judge, real, every, n=n, seed=seed)


def load_model(run: "Run | str | Path") -> keras.Model:
    """The model of a run (after its last completed epoch), under the current backend."""
    import kgen.models  # noqa: F401 - registers the classes for deserialisation

    run = run if isinstance(run, Run) else Run.open(run)
    if not run.model_path.is_file():
        raise RunError(f"{run.path} has no model.keras yet (no epoch completed)")
    try:
        return keras.models.load_model(run.model_path, compile=False)
    except Exception as exc:  # noqa: BLE001 - a broken archive is a user-facing error
        raise RunError(f"{run.model_path} cannot be loaded ({type(exc).__name__}: {exc})") from None
