"""Training callbacks: image grids in TensorBoard (and PNG), checkpoints, NaN guard."""

from __future__ import annotations

import math

import keras
import numpy as np

from kgen import images, sampling
from kgen.runs import Run


class ImageGrids(keras.callbacks.Callback):
    """Each epoch: the model's image grids, in TensorBoard (``<log_dir>/images``) and as PNG.

    - ``samples``: draws from the prior (models with ``sample``), fixed seed so epochs compare;
      ``interpolation`` (latent walks), ``style_grid`` (conditional generators: a style per row,
      a class per column) and InfoGAN's ``traversal_*`` code grids;
    - ``reconstructions``: input/reconstruction pairs of the first 16 ``inputs``;
    - ``denoising``: noisy / denoised / clean rows (models with ``corrupt``);
    - ``codes``: the 2-D projection of all ``inputs``' codes coloured by ``labels``
      (PCA when the latent has more than 2 dimensions), for models with ``encode``; over the
      prior's density for models with a prior on their codes (the AAE).

    Written with ``tf.summary.image``, which works on every backend.
    """

    def __init__(self, log_dir, samples_dir=None, inputs: np.ndarray | None = None, labels: np.ndarray | None = None,
                 n_samples: int = 64, seed: int = 1234, nan_guard: "NaNGuard | None" = None):
        super().__init__()
        self.nan_guard = nan_guard
        self.log_dir, self.samples_dir = str(log_dir), samples_dir
        self.inputs, self.labels, self.n_samples, self.seed = inputs, labels, n_samples, seed
        self._writer = None  # created lazily: callbacks get deep-copied (KerasTuner)

    def grids(self, model) -> dict[str, np.ndarray]:
        data_range = model.hparams.get("data_range", "unit")
        out = {}
        if hasattr(model, "sample"):
            out.update(self.generator_grids(model, data_range))
        if self.inputs is None:
            return out
        shown = self.inputs[:16]
        if hasattr(model, "reconstruct") and (self.labels is not None
                                              or not getattr(model, "reconstructs_with_labels", False)):
            from kgen.evaluate import reconstructions

            outputs = reconstructions(model, shown, None if self.labels is None else self.labels[:16])
            shown_in, shown_out = images.to_display(shown, data_range), images.to_display(outputs, data_range)
            if shown_in is not None:
                out["reconstructions"] = images.pairs(shown_in, shown_out)
        if hasattr(model, "corrupt"):
            noisy = keras.ops.convert_to_numpy(model.corrupt(shown[:8], seed=self.seed))
            denoised = keras.ops.convert_to_numpy(model.reconstruct(noisy))
            rows = [images.to_display(a, data_range) for a in (noisy, denoised, shown[:8])]
            if rows[0] is not None:
                out["denoising"] = images.grid(np.concatenate(rows), columns=8)
        if hasattr(model, "encode") and self.labels is not None:
            from kgen.evaluate import code_scatter

            out["codes"] = code_scatter(model, self.inputs, self.labels)
        return out

    def generator_grids(self, model, data_range: str) -> dict[str, np.ndarray]:
        """Fixed-noise samples (one column per class for conditional models), a latent
        interpolation and, for InfoGAN, the code traversals."""
        n, columns = self.n_samples, None
        if sampling.is_conditional(model):  # one column per class
            columns = model.num_classes
            n = columns * max(1, self.n_samples // columns)
        batches = {"samples": (sampling.sample_batches(model, n, self.seed), columns)}
        if hasattr(model, "sample_latent") and hasattr(model, "generate"):
            batches["interpolation"] = (sampling.interpolation_grid(model, seed=self.seed), 10)
        if sampling.is_conditional(model) and getattr(model, "generator_takes_labels", True) and hasattr(
                model, "sample_latent"):
            batches["style_grid"] = (sampling.style_grid(model, seed=self.seed), model.num_classes)
        if hasattr(model, "traversal_grids"):
            batches.update({f"traversal_{name}": grid for name, grid in model.traversal_grids(self.seed).items()})
        out = {}
        for name, (batch, cols) in batches.items():
            shown = images.to_display(keras.ops.convert_to_numpy(batch), data_range)
            if shown is not None:
                out[name] = images.grid(shown, columns=cols)
        return out

    def on_epoch_end(self, epoch, logs=None):
        import tensorflow as tf

        if self.nan_guard is not None and self.nan_guard.failed_at is not None:
            return
        grids = self.grids(self.model)
        if self._writer is None:
            self._writer = tf.summary.create_file_writer(self.log_dir)
        with self._writer.as_default():
            for name, image in grids.items():
                tf.summary.image(name, image[None], step=epoch + 1)
        self._writer.flush()
        if self.samples_dir is not None:
            self.samples_dir.mkdir(exist_ok=True)
            for name, image in grids.items():
                images.save_png(image, self.samples_dir / f"{name}-epoch-{epoch + 1:04d}.png")


class SampleQuality(keras.callbacks.Callback):
    """Every ``every`` epochs: FID, KID and classifier score of ``n`` samples against ``real``
    (held-out images scaled as ``judge`` was trained, featurised once here), added to the epoch's logs, so
    TensorBoard shows them (``epoch_fid``, ...) and metrics.json keeps them."""

    def __init__(self, judge, real: np.ndarray, every: int, n: int = 2000, seed: int = 0):
        from kgen.metrics import classifier_outputs

        super().__init__()
        self.judge, self.every, self.n, self.seed = judge, every, n, seed
        self.real_features, _ = classifier_outputs(judge, real)  # the real images never change: once

    def on_epoch_end(self, epoch, logs=None):
        from kgen.metrics import sample_quality

        if logs is None or (epoch + 1) % self.every:
            return
        report = sample_quality(self.model, self.judge, self.real_features, self.n, self.seed,
                                kid_subset=min(1000, self.n))
        logs.update({name: report[name] for name in ("fid", "kid", "classifier_score")})


class NaNGuard(keras.callbacks.Callback):
    """Stops training at the first non-finite loss or metric; the epoch is then not checkpointed."""

    def __init__(self):
        super().__init__()
        self.failed_at: tuple[int, int] | None = None
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        # Every logged value: a GAN has no single "loss" (d_loss, g_loss, ...).
        if any(not math.isfinite(float(v)) for v in (logs or {}).values()):
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
