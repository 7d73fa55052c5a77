"""`kgen train` as a library function: config -> data -> model -> fit -> run directory."""

from __future__ import annotations

import math
import shutil
import signal
import sys
from dataclasses import asdict
from typing import Any
from pathlib import Path

import keras
import numpy as np

import kgen
from kgen import callbacks as kgen_callbacks
from kgen import data as kgen_data
from kgen.config import EVAL_SAMPLES, LR_SCHEDULES, RUN_RECORD_KEYS, TrainConfig  # noqa: F401 - part of this API
from kgen.data import dataset_arrays
from kgen.files import archive_problem, atomic_write
from kgen.metrics import rescale
from kgen.metrics.report import check_compatible
from kgen.models import get_model_class
from kgen.backend.distribution import Distribution
from kgen.backend.distribution import configure as configure_distribution
from kgen.backend.execution import compile_options  # noqa: F401 - part of this API
from kgen.backend.precision import dtype_policy
from kgen.backend.precision import resolve as resolve_precision
from kgen.runs import Run, create_run_dir, find_classifier, load_model

# Indices (into the training split) and labels of a semi-supervised run's labelled examples.
LABELLED_FILE = "labelled.npz"


def learning_rate(config: "TrainConfig", num_train: int | None, distribution: Distribution | None = None):
    """The optimizers' learning rate: constant, or cosine decay from --learning-rate to 1% of it
    over all training steps (Loshchilov & Hutter 2017, without restarts)."""
    if config.lr_schedule == "constant":
        return config.learning_rate
    steps_per_epoch = steps_in_epoch(config, num_train or 1, distribution) or 1
    return keras.optimizers.schedules.CosineDecay(config.learning_rate, config.epochs * steps_per_epoch, alpha=0.01)


# Epochs of a run without --epochs whose pass length is unknown (a dataset of unknown size).
FALLBACK_EPOCHS = 10


def default_epochs(default_steps: int, steps_per_epoch: int | None) -> int:
    """Epochs of a run without --epochs: enough for the model's ``default_steps`` batches,
    ceil(default_steps / steps_per_epoch), at least one (FALLBACK_EPOCHS when the pass length is unknown).
    A fixed number of epochs would be 350 batches on 4,500 digits and 4,700 on 60,000 images."""
    if not steps_per_epoch:
        return FALLBACK_EPOCHS
    return max(1, math.ceil(default_steps / steps_per_epoch))


class TrainingDiverged(RuntimeError):
    """The loss became NaN/inf; the run keeps its last good checkpoint."""


def build_model(config: TrainConfig, input_shape, data_range: str, num_train: int | None = None,
                num_classes: int | None = None, distribution: Distribution | None = None):
    """The model of a run, compiled, in the run's precision (``config.precision``, already resolved
    from "auto"); the dataset's facts (``num_train``, ``num_classes``) fill the options that declare
    them (``Option.from_data``) when the user did not give them. ``distribution``: the engine the
    model is built for (call inside its ``scope()``)."""
    cls = get_model_class(config.model)
    options = dict(config.model_options)
    facts = {"num_train": num_train, "num_classes": num_classes}
    for option in cls.options:
        if option.from_data is not None and options.get(option.name) is None:
            options[option.name] = facts[option.from_data]
    precision = "float32" if config.precision == "auto" else config.precision
    with dtype_policy(precision):
        model = cls(tuple(input_shape), seed=config.seed, data_range=data_range, **options)
    most = distribution.max_steps_per_execution if distribution is not None else None
    model.compile(learning_rate=learning_rate(config, num_train, distribution), **compile_options(
        config.jit, config.steps_per_execution, (config.steps_per_epoch, config.validation_steps), most))
    return model


def setup_distribution(config: TrainConfig) -> Distribution:
    """The data-parallel engine a run trains on (one device unless it asks for more; see
    ``TrainConfig.wants_distribution``). Before any data, model or tensor exists."""
    if not config.wants_distribution():
        return Distribution()
    return configure_distribution(
        devices=config.devices, coordinator=config.coordinator, num_processes=config.num_processes,
        process_id=config.process_id, timeout=config.distribution_timeout, global_batch_size=config.batch_size)


def load_data(config: TrainConfig, verbose: bool = True) -> tuple[kgen_data.Dataset, str]:
    """The run's dataset and how its inputs are scaled for the model (``data_range``); ``verbose``:
    say where it came from."""
    data = kgen_data.load_dataset(config.dataset, config.data_dir, verbose=verbose)
    return data, kgen_data.data_range_for(data, get_model_class(config.model).data_range)


def grid_arrays(data, data_range: str, n: int = 1000) -> tuple:
    """Held-out images and labels for ImageGrids: the first 16 are drawn, all n are projected as codes."""
    source = data.test if data.test is not None else data.train
    batch = kgen_data.pipeline(source.take(n), n, data_range, data.dtype)
    return tuple(t.numpy() for t in next(iter(batch)))


def pipelines(config: TrainConfig, data, data_range: str,
              initial_epoch: int = 0) -> tuple[kgen_data.TrainingBatches, Any]:
    """The training batches from ``initial_epoch`` on, a function of (seed, epoch, step) alone
    (``kgen.data.training_batches``), and the test batches (None without a test split)."""
    train = kgen_data.training_batches(
        data.train, config.batch_size, data_range, data.dtype, seed=config.seed, binarize=config.binarize,
        steps_per_epoch=config.steps_per_epoch, num_examples=data.num_train, initial_epoch=initial_epoch,
    )
    test = None
    if data.test is not None:
        test = kgen_data.pipeline(data.test, config.batch_size, data_range, data.dtype, binarize=config.binarize,
                                  seed=config.seed)
    return train, test


def steps_in_epoch(config: TrainConfig, num_train: int | None, distribution: Distribution | None = None) -> int | None:
    """Training steps per epoch: --steps-per-epoch, else one pass (None when the size is unknown); a
    distributed pass drops its last, partial batch (every replica needs an equal share)."""
    if config.steps_per_epoch or not num_train:
        return config.steps_per_epoch
    if distribution is not None and distribution.is_distributed:
        return num_train // config.batch_size
    return math.ceil(num_train / config.batch_size)


def fit_callbacks(batches: kgen_data.TrainingBatches) -> list[keras.callbacks.Callback]:
    """What every fit() over ``batches`` needs: the check that ends it on a signal Python lost
    (``kgen.signals``), and the data's epoch, so each epoch reads its own batches."""
    data_epoch = [] if batches.epoch is None else [kgen_callbacks.DataEpoch(batches.epoch)]
    return [kgen_callbacks.SignalCheck(), *data_epoch]


def say(message: str) -> None:
    print(f"[kgen] {message}", file=sys.stderr)


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM) during training; the message says what was kept, ``signum`` which signal."""

    def __init__(self, message: str, cause: BaseException):
        super().__init__(message)
        self.signum = getattr(cause, "signum", signal.SIGINT)


def train(
    config: TrainConfig | None = None,
    run_dir: str | None = None,
    resume: str | None = None,
    runs_root: str | Path = "runs",
    verbose: int | str = "auto",
    extra_callbacks: list | None = None,
) -> Run:
    """Train a model and return its run. ``resume`` continues a run from its last intact checkpoint.

    When resuming, ``config`` may raise ``epochs`` and sets how the run executes (its distribution
    settings, which may differ from the run's first devices); everything else comes from the run. A
    resumed run sees the batches and random draws the uninterrupted run would have seen (``pipelines``;
    the seed generators' states are in the checkpoint). Everything that can be refused (options,
    devices, data, model) is refused before the run directory is created; a new run that fails before
    its first epoch is checkpointed leaves no run directory behind.

    Distributed (``config.wants_distribution()``): every process runs this with the same config;
    process 0 alone writes the run directory (the others learn its path from it).
    """
    if resume is not None:
        run = Run.open(resume)
        resumed = TrainConfig.from_dict(run.config())
        if config is not None:
            if config.epochs is not None:  # None: the run's own total
                resumed.epochs = config.epochs
            for name, value in config.execution().items():
                setattr(resumed, name, value)
        else:
            for name, value in TrainConfig(model="").execution().items():  # one device unless asked
                setattr(resumed, name, value)
        config = resumed
        checkpoint = run.latest_checkpoint(report=say)
        initial_epoch = checkpoint[0] if checkpoint else 0
        repair = checkpoint is not None and (not run.model_path.is_file() or archive_problem(run.model_path))
        if initial_epoch >= config.epochs and not repair:
            say(f"{run.path} already completed {initial_epoch} of {config.epochs} epochs; "
                "pass a larger --epochs to continue")
            return run
    else:
        initial_epoch, checkpoint = 0, None
    config.validate()
    distribution = setup_distribution(config)
    chief = distribution.is_chief
    requested = config.precision
    config.precision, precision_reason = resolve_precision(config.precision)
    keras.utils.set_random_seed(config.seed)
    # Process 0 alone tells what happens; every process still raises its errors.
    tell = say if chief else (lambda message: None)
    data, data_range = load_data(config, verbose=chief)
    if config.epochs is None:  # a new run without --epochs (a resumed one has its own total)
        steps = steps_in_epoch(config, data.num_train, distribution)
        default_steps = get_model_class(config.model).default_steps
        config.epochs = default_epochs(default_steps, steps)
        tell(f"--epochs not given: {config.epochs} epoch(s) of {steps or '?'} batches, about the {config.model} "
             f"model's default of {default_steps:,} training steps")
    with distribution.scope():
        model = build_model(config, data.shape, data_range, data.num_train, data.num_classes, distribution)
    labelled = None
    if resume is None and model.labelled_examples:
        # The semi-supervised model's labelled examples, balanced per class with the run's seed;
        # kept in the model (so resume and model.keras have them) and their indices in the run.
        labelled = kgen_data.labelled_subset(data.train, model.labelled_examples, data.num_classes, data_range,
                                             data.dtype, seed=config.seed)
        model.set_labelled(*labelled[1:])
    train_batches, test_ds = pipelines(config, data, data_range, initial_epoch)
    train_ds = distribution.distribute_dataset(train_batches.dataset, config.batch_size, data.num_train)
    if test_ds is not None:
        test_ds = distribution.distribute_dataset(test_ds, config.batch_size, data.num_test)
    grid_inputs, grid_labels = grid_arrays(data, data_range)

    if resume is None:
        path = create_run_dir(config.model, config.dataset, run_dir, runs_root) if chief else None
        run, fresh = Run(distribution.broadcast_text(str(path) if chief else None)), True
        if chief:
            run.write_config({
                **asdict(config), "backend": keras.backend.backend(), "kgen_version": kgen.__version__,
                "data_source": data.source, "data_range": data_range, "input_shape": list(data.shape),
                "precision_reason": precision_reason if requested == "auto" else "--precision",
                "distribution": distribution.describe(),
            })
            if labelled is not None:
                np.savez(run.path / LABELLED_FILE, indices=labelled[0], labels=labelled[2])
    else:
        fresh = False
        if checkpoint is not None:
            with distribution.scope():
                model.load_weights(checkpoint[1])
            if initial_epoch >= config.epochs:  # only model.keras was damaged: write it again
                if chief:
                    atomic_write(run.model_path, lambda tmp: model.save(tmp))
                    tell(f"rewrote {run.model_path} from the checkpoint of epoch {initial_epoch}")
                return run
            tell(f"resuming {run.path} after epoch {initial_epoch}")
    distribution.prepare(model)  # the replicas start from the same state, each with its own noise
    if distribution.is_distributed:
        tell(f"training on {distribution.describe()}")

    nan_guard = kgen_callbacks.NaNGuard(steps_in_epoch(config, data.num_train, distribution))
    # Callbacks that only compute run wherever the model's arrays are (every process of a multi-host
    # JAX run); those that write, on process 0 only.
    computes_everywhere = distribution.kind == "jax-data-parallel" and distribution.num_processes > 1
    try:
        if fresh:
            with distribution.scope():
                pretraining = model.before_training(train_ds, config.learning_rate, train_batches.steps_per_epoch,
                                                    verbose if chief else 0, callbacks=fit_callbacks(train_batches))
            if pretraining and chief:
                run.record(pretraining, "pretraining")
        writers = [
            kgen_callbacks.Checkpoint(run, nan_guard),
            kgen_callbacks.TensorBoard(log_dir=str(run.log_dir), write_graph=False),
        ] if chief else []
        observers = [
            *sample_quality_callbacks(config, run, model, data),
            kgen_callbacks.ImageGrids(run.log_dir / "images", run.samples_dir, inputs=grid_inputs,
                                      labels=grid_labels, nan_guard=nan_guard, write=chief,
                                      every=kgen_callbacks.grid_interval(config.epochs)),
        ] if chief or computes_everywhere else []
        # The order matters at an epoch's end: the sample-quality figures join the logs, the guard
        # checks logs and variables, then the checkpoint is written and the grids drawn.
        callbacks = [*fit_callbacks(train_batches), *observers[:-1], nan_guard, *writers, *observers[-1:],
                     *(extra_callbacks or [])]
        model.fit(
            train_ds,
            epochs=config.epochs,
            initial_epoch=initial_epoch,
            steps_per_epoch=train_batches.steps_per_epoch,
            validation_data=test_ds,
            validation_steps=config.validation_steps,
            callbacks=callbacks,
            shuffle=False,  # the tf.data pipeline shuffles
            verbose=verbose if chief else 0,
        )
    except KeyboardInterrupt as exc:
        if chief and discard_unsaved(run, fresh):
            raise RunInterrupted("before the first epoch completed; nothing was kept", exc) from None
        raise RunInterrupted(f"the last completed epoch is kept: resume with `kgen train --resume {run.path}`",
                             exc) from None
    except BaseException:
        if chief:
            discard_unsaved(run, fresh)
        raise
    if nan_guard.failed_at is not None:
        last = run.latest_checkpoint() if chief else None
        if chief and discard_unsaved(run, fresh):
            kept = f"no epoch completed, so nothing was kept (the run directory {run.path} was removed)"
        elif last:
            kept = f"the last good checkpoint (epoch {last[0]}) is kept in {run.path}"
        else:
            kept = f"no epoch completed in {run.path}"
        raise TrainingDiverged(f"{nan_guard.message()}; training stopped, {kept}; try a lower --learning-rate")
    if test_ds is not None:  # on every process: evaluate is collective under multi-process engines
        results = model.evaluate(test_ds, steps=config.validation_steps, verbose=0, return_dict=True)
        if chief:
            run.record(results, "final")
    distribution.barrier()
    return run


def discard_unsaved(run: Run, fresh: bool) -> bool:
    """Remove a run this call created when it holds no checkpoint yet (nothing worth keeping);
    True if it was removed."""
    if not fresh or run.committed_epoch() is not None:
        return False
    shutil.rmtree(run.path, ignore_errors=True)
    return True


def sample_quality_callbacks(config: TrainConfig, run: Run, model, data) -> list:
    """With --eval-every N: the callback logging FID/KID/classifier score every N epochs."""
    if not config.eval_every:
        return []
    classifier_run = find_classifier(run, config.classifier)
    print(f"[kgen] FID every {config.eval_every} epochs, judged by {classifier_run.path}", file=sys.stderr)
    return [sample_quality_callback(classifier_run, model, data, config.eval_every, config.seed)]


def sample_quality_callback(classifier_run: Run, model, data, every: int = 1, seed: int = 0,
                            n: int = EVAL_SAMPLES) -> kgen_callbacks.SampleQuality:
    """The callback adding FID/KID/classifier score of ``n`` samples of ``model`` to the logs every
    ``every`` epochs, judged by ``classifier_run`` against ``n`` held-out images of ``data``."""
    judge = load_model(classifier_run)
    check_compatible(model, judge)
    data_range = model.hparams["data_range"]
    real, _ = dataset_arrays(data, "test" if data.test is not None else "train", data_range, n)
    real = rescale(real, data_range, judge.hparams["data_range"])
    return kgen_callbacks.SampleQuality(judge, real, every, n=n, seed=seed)
