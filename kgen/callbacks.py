"""Training callbacks: image grids in TensorBoard (and PNG), checkpoints, NaN guard."""

from __future__ import annotations

import math

import keras
import numpy as np

from kgen import images
from kgen.runs import Run


class ImageGrids(keras.callbacks.Callback):
    """Each epoch: samples from the prior (generative models) and input/reconstruction pairs.

    Written with ``tf.summary.image`` to ``<log_dir>/images`` (works on every
    backend) and as PNG files to ``samples_dir``. Samples use a fixed seed so the
    grids of successive epochs are comparable.
    """

    def __init__(self, log_dir, samples_dir=None, inputs: np.ndarray | None = None, n_samples: int = 64,
                 seed: int = 1234, nan_guard: "NaNGuard | None" = None):
        super().__init__()
        self.nan_guard = nan_guard
        self.log_dir, self.samples_dir = str(log_dir), samples_dir
        self.inputs, self.n_samples, self.seed = inputs, n_samples, seed
        self._writer = None  # created lazily: callbacks get deep-copied (KerasTuner)

    def grids(self, model) -> dict[str, np.ndarray]:
        data_range = model.hparams.get("data_range", "unit")
        out = {}
        if hasattr(model, "sample"):
            samples = images.to_display(keras.ops.convert_to_numpy(model.sample(self.n_samples, seed=self.seed)), data_range)
            if samples is not None:
                out["samples"] = images.grid(samples)
        if hasattr(model, "reconstruct") and self.inputs is not None:
            outputs = keras.ops.convert_to_numpy(model.reconstruct(self.inputs))
            shown_in, shown_out = images.to_display(self.inputs, data_range), images.to_display(outputs, data_range)
            if shown_in is not None:
                out["reconstructions"] = images.pairs(shown_in, shown_out)
        if hasattr(model, "corrupt") and self.inputs is not None:  # denoising: noisy / denoised / clean rows
            noisy = keras.ops.convert_to_numpy(model.corrupt(self.inputs, seed=self.seed))
            denoised = keras.ops.convert_to_numpy(model.reconstruct(noisy))
            shown = [images.to_display(a[:8], data_range) for a in (noisy, denoised, self.inputs)]
            if shown[0] is not None:
                out["denoising"] = images.grid(np.concatenate(shown), columns=8)
        return out

    def on_epoch_end(self, epoch, logs=None):
        if self.nan_guard is not None and self.nan_guard.failed_at is not None:
            return
        grids = self.grids(self.model)
        self._writer = write_images(self._writer, self.log_dir, self.samples_dir, grids, epoch + 1)


def write_images(writer, log_dir: str, samples_dir, grids: dict[str, np.ndarray], step: int):
    """``tf.summary.image`` each grid (any backend) and save it as PNG; returns the (lazily made) writer."""
    import tensorflow as tf

    writer = writer or tf.summary.create_file_writer(log_dir)
    with writer.as_default():
        for name, image in grids.items():
            tf.summary.image(name, image[None], step=step)
    writer.flush()
    if samples_dir is not None:
        samples_dir.mkdir(exist_ok=True)
        for name, image in grids.items():
            images.save_png(image, samples_dir / f"{name}-epoch-{step:04d}.png")
    return writer


class CodeProjection(keras.callbacks.Callback):
    """Each epoch: the 2-D projection of held-out codes coloured by label (PCA when latent > 2)."""

    def __init__(self, log_dir, samples_dir, inputs: np.ndarray, labels: np.ndarray, every: int = 1,
                 nan_guard: "NaNGuard | None" = None):
        super().__init__()
        self.log_dir, self.samples_dir, self.inputs, self.labels = str(log_dir), samples_dir, inputs, labels
        self.every, self.nan_guard = every, nan_guard
        self._writer = None

    def on_epoch_end(self, epoch, logs=None):
        if (self.nan_guard is not None and self.nan_guard.failed_at is not None) or (epoch + 1) % self.every:
            return
        from kgen.evaluate import code_scatter

        image = code_scatter(self.model, self.inputs, self.labels)
        self._writer = write_images(self._writer, self.log_dir, self.samples_dir, {"codes": image}, epoch + 1)


class NaNGuard(keras.callbacks.Callback):
    """Stops training at the first non-finite loss; the epoch is then not checkpointed."""

    def __init__(self):
        super().__init__()
        self.failed_at: tuple[int, int] | None = None
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.failed_at = (self._epoch + 1, batch + 1)
            self.model.stop_training = True


class Checkpoint(keras.callbacks.Callback):
    """After every good epoch: weights + optimizer state, model.keras, metrics.json."""

    def __init__(self, run: Run, nan_guard: NaNGuard):
        super().__init__()
        self.run, self.nan_guard = run, nan_guard

    def on_epoch_end(self, epoch, logs=None):
        if self.nan_guard.failed_at is not None:
            return
        if any(not math.isfinite(float(v)) for v in (logs or {}).values()):
            self.nan_guard.failed_at = (epoch + 1, 0)
            self.model.stop_training = True
            return
        # Metrics first, checkpoint pointer last: a kill between the two re-runs
        # this epoch on resume, and record_epoch then replaces its entry.
        self.run.record_epoch(epoch + 1, logs or {})
        self.run.save_checkpoint(self.model, epoch + 1)
