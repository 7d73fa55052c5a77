"""Training callbacks: image grids in TensorBoard (and PNG), checkpoints, NaN guard, the data's epoch,
signals that must end the run."""

from __future__ import annotations

import math

import keras
import numpy as np

from kgen import images, sampling, signals
from kgen.metrics import classifier_outputs, sample_quality
from kgen.models import Ability, can
from kgen.outputs import code_scatter, reconstructions
from kgen.runs import Run

# samples/ keeps the grids of every PNG_KEEP_EVERY-th drawing and of the last one.
PNG_KEEP_EVERY = 10
# A run draws its grids about this many times at most (every epoch of a run up to this long): the
# grids of a sampler can cost more than a short epoch (an RBM's 1,000 Gibbs steps per sample).
GRIDS_PER_RUN = 30


def grid_interval(epochs: int) -> int:
    """Epochs between two drawings of the grids: 1 up to GRIDS_PER_RUN epochs, then ceil(epochs / GRIDS_PER_RUN)."""
    return max(1, math.ceil(epochs / GRIDS_PER_RUN))


class ImageGrids(keras.callbacks.Callback):
    """Every ``every`` epochs and after the last: the model's image grids, in TensorBoard
    (``<log_dir>/images``, step = completed epochs) and as PNG.

    - generators (``Ability.SAMPLE``): every grid of ``sampling.generator_grids`` (samples with a
      fixed seed so epochs compare, interpolations, style grids, code traversals);
    - ``reconstructions``: input/reconstruction pairs of the first 16 ``inputs``;
    - ``denoising``: noisy / denoised / clean rows (``Ability.DENOISE``);
    - ``codes``: the 2-D projection of all ``inputs``' codes coloured by ``labels``
      (PCA when the latent has more than 2 dimensions), for models that encode; over the
      prior's density for models with a prior on their codes (``Ability.CODE_PRIOR``).

    Written with ``tf.summary.image``, which works on every backend.
    """

    def __init__(self, log_dir, samples_dir=None, inputs: np.ndarray | None = None, labels: np.ndarray | None = None,
                 n_samples: int = 64, seed: int = 1234, nan_guard: "NaNGuard | None" = None,
                 keep_every: int = PNG_KEEP_EVERY, write: bool = True, every: int = 1):
        super().__init__()
        self.nan_guard, self.keep_every, self.write, self.every = nan_guard, keep_every, write, every
        self.log_dir, self.samples_dir = str(log_dir), samples_dir
        self.inputs, self.labels, self.n_samples, self.seed = inputs, labels, n_samples, seed
        self._writer = None  # created lazily: callbacks get deep-copied (KerasTuner)

    def grids(self, model) -> dict[str, np.ndarray]:
        data_range = model.hparams.get("data_range", "unit")
        out = {}
        if can(model, Ability.SAMPLE):
            out.update(sampling.pictures(sampling.generator_grids(model, self.n_samples, self.seed), data_range))
        if self.inputs is None:
            return out
        shown = self.inputs[:16]
        if can(model, Ability.RECONSTRUCT) and (self.labels is not None
                                                or not can(model, Ability.LABELLED_RECONSTRUCTION)):
            outputs = reconstructions(model, shown, None if self.labels is None else self.labels[:16])
            shown_in, shown_out = images.to_display(shown, data_range), images.to_display(outputs, data_range)
            if shown_in is not None:
                out["reconstructions"] = images.pairs(shown_in, shown_out)
        if can(model, Ability.DENOISE):
            noisy = keras.ops.convert_to_numpy(model.corrupt(shown[:8], seed=self.seed))
            denoised = keras.ops.convert_to_numpy(model.reconstruct(noisy))
            rows = [images.to_display(a, data_range) for a in (noisy, denoised, shown[:8])]
            if rows[0] is not None:
                out["denoising"] = images.grid(np.concatenate(rows), columns=8)
        if can(model, Ability.ENCODE) and self.labels is not None:
            out["codes"] = code_scatter(model, self.inputs, self.labels)
        return out

    def on_epoch_end(self, epoch, logs=None):
        import tensorflow as tf

        if self.nan_guard is not None and self.nan_guard.failed_at is not None:
            return
        done = epoch + 1  # completed epochs
        if done % self.every and done != (self.params or {}).get("epochs"):
            return
        grids = self.grids(self.model)
        if not self.write:  # a process of a multi-host run that computes the grids with the others
            return
        if self._writer is None:
            self._writer = tf.summary.create_file_writer(self.log_dir)
        with self._writer.as_default():
            for name, image in grids.items():
                tf.summary.image(name, image[None], step=done)  # step = completed epochs, as TensorBoard
        self._writer.flush()
        if self.samples_dir is not None:
            self.samples_dir.mkdir(exist_ok=True)
            previous = (done - 1) // self.every * self.every  # the drawing before this one (0: none)
            for name, image in grids.items():
                images.save_png(image, self.samples_dir / png_name(name, done))
                if previous and previous % (self.keep_every * self.every):  # not one of the kept drawings
                    (self.samples_dir / png_name(name, previous)).unlink(missing_ok=True)


def png_name(grid: str, epoch: int) -> str:
    """samples/<grid>-epoch-NNNN.png: the grid after ``epoch`` completed epochs."""
    return f"{grid}-epoch-{epoch:04d}.png"


class TensorBoard(keras.callbacks.TensorBoard):
    """Keras's TensorBoard callback with epoch scalars at step = completed epochs (1..n), the step of
    the image grids, metrics.json's "epoch" and the checkpoint names (Keras itself logs at 0..n-1)."""

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch + 1, logs)


class DataEpoch(keras.callbacks.Callback):
    """Sets the data's epoch variable (``kgen.data.TrainingBatches.epoch``) when an epoch begins, so
    the pass fit() reads is the one of that epoch, on a fresh run and on a resumed one alike."""

    def __init__(self, variable):
        super().__init__()
        self.variable = variable

    def on_epoch_begin(self, epoch, logs=None):
        self.variable.assign(epoch)


class SignalCheck(keras.callbacks.Callback):
    """After every compiled call of the step (one batch on torch, steps_per_execution batches on
    TensorFlow and JAX): raise the SIGINT/SIGTERM an active ``kgen.signals.Signals`` received and
    whose exception Python lost (a signal handled inside a finaliser or a gc callback), so the run
    ends there instead of training on (``kgen.signals``). No-op without a signal."""

    def on_train_batch_end(self, batch, logs=None):
        signals.check()

    def on_test_batch_end(self, batch, logs=None):
        signals.check()

    def on_epoch_end(self, epoch, logs=None):
        signals.check()


class SampleQuality(keras.callbacks.Callback):
    """Every ``every`` epochs: FID, KID and classifier score of ``n`` samples against ``real``
    (held-out images scaled as ``judge`` was trained, featurised once here), added to the epoch's logs, so
    TensorBoard shows them (``epoch_fid``, ...) and metrics.json keeps them."""

    def __init__(self, judge, real: np.ndarray, every: int, n: int = 2000, seed: int = 0):
        super().__init__()
        self.judge, self.every, self.n, self.seed = judge, every, n, seed
        self.real_features, _ = classifier_outputs(judge, real)  # the real images never change: once

    def on_epoch_end(self, epoch, logs=None):
        if logs is None or (epoch + 1) % self.every:
            return
        report = sample_quality(self.model, self.judge, self.real_features, self.n, self.seed,
                                kid_subset=min(1000, self.n))
        logs.update({name: report[name] for name in ("fid", "kid", "classifier_score")})


class NaNGuard(keras.callbacks.Callback):
    """Stops training at the first non-finite logged value; the epoch is then not checkpointed.

    Keras reports a batch once per compiled execution (``steps_per_execution`` steps), with the
    epoch's running means: a NaN that appears there began in one of the steps since the previous
    report, which is what ``failed_at`` records.
    """

    def __init__(self, steps_per_epoch: int | None = None):
        super().__init__()
        self.failed_at: tuple[int, int, int] | None = None  # (epoch, first batch, last batch), 1-based
        self.reason = "loss"
        self.steps_per_epoch = steps_per_epoch  # a last execution may be reported past the epoch's end
        self._epoch, self._seen = 0, 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch, self._seen = epoch, 0

    def on_train_batch_end(self, batch, logs=None):
        # Every logged value: a GAN has no single "loss" (d_loss, g_loss, ...).
        if self.failed_at is None and not all_finite(logs):
            self.stop(self._seen + 1, batch + 1)
        self._seen = batch + 1

    def on_epoch_end(self, epoch, logs=None):
        """The end of an epoch: every logged value (with the objectives callbacks added) and every
        variable (weights and each phase optimizer's state) must be finite before anything is saved.
        The logs alone do not say so: a compiled kernel may map NaN weights to finite activations (a
        fused ReLU returning 0 for NaN), leaving the loss finite. Every process of a distributed run
        checks, so all of them stop together (the logs are global, the variables replicated)."""
        if self.failed_at is not None:
            return
        if not all_finite(logs):
            self.stop(1, self._seen)
            return
        bad = nonfinite_variables(self.model)
        if bad:
            shown = ", ".join(bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
            self.stop(1, self._seen, reason=f"the weights ({shown})")

    def stop(self, first: int, last: int, reason: str = "loss") -> None:
        last = min(last, self.steps_per_epoch or last)
        self.failed_at, self.reason = (self._epoch + 1, min(first, last), last), reason
        self.model.stop_training = True

    def message(self) -> str:
        """Where training went wrong, as precisely as the reports allow."""
        epoch, first, last = self.failed_at
        if self.reason != "loss":
            return f"{self.reason} became NaN/inf in epoch {epoch}"
        where = f"batch {last}" if first == last else f"batches {first}-{last}"
        return f"loss became NaN/inf in epoch {epoch}, {where}"


def all_finite(logs: dict | None) -> bool:
    return all(math.isfinite(float(v)) for v in (logs or {}).values())


def nonfinite_variables(model) -> list[str]:
    """Paths of the model's and its optimizers' (when compiled) float variables holding NaN or inf."""
    bad = []
    optimizer = getattr(model, "optimizer", None)
    for variable in [*model.weights, *(optimizer.variables if optimizer is not None else [])]:
        if "float" in str(variable.dtype) and not np.isfinite(keras.ops.convert_to_numpy(variable)).all():
            bad.append(variable.path)
    return bad


class Checkpoint(keras.callbacks.Callback):
    """After every good epoch: weights + optimizer state, model.keras, metrics.json.

    The invariant: nothing is saved unless every logged value and every variable (weights and each
    phase optimizer's state) is finite: ``nan_guard`` checks both at the end of the epoch, before
    this callback (it comes after the guard in the list).
    """

    def __init__(self, run: Run, nan_guard: NaNGuard):
        super().__init__()
        self.run, self.nan_guard = run, nan_guard

    def on_epoch_end(self, epoch, logs=None):
        if self.nan_guard.failed_at is not None:
            return
        # Metrics first, checkpoint pointer last: a kill between the two re-runs
        # this epoch on resume, and record_epoch then replaces its entry.
        self.run.record_epoch(epoch + 1, logs or {})
        self.run.save_checkpoint(self.model, epoch + 1)
