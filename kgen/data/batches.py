"""Batches for fit() and for evaluation, as tf.data pipelines every backend's ``fit()`` takes.

Every random choice of the data is a function of (seed, epoch, position), never of how often a
pipeline was iterated before, so a run resumed after a kill sees exactly the batches the
uninterrupted run would have seen:

- pass p over the training split is shuffled by a stateless generator keyed by ``pass_seed(seed, p)``:
  each block of SHUFFLE_BUFFER consecutive examples is permuted (a uniform permutation of a smaller
  split; a larger one mixes as much as a shuffle buffer of that size). tf.data's own shuffle is not
  used: its seed is combined with TensorFlow's global seed, and refuses a per-pass tensor seed when
  that global seed is 0;
- dynamic binarization draws pixel j of the i-th example of pass p from the stateless generator
  keyed by (pass_seed(seed, p), i) — the evaluation pipeline uses the key (seed, i), so a binarized
  test split is the same every time it is scored.

One epoch is one pass (the default), or ``steps_per_epoch`` batches of a stream of passes laid end to
end: epoch e then starts at example e * steps_per_epoch * batch_size of that stream.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import tensorflow as tf

from kgen.data.sources import DataError

SHUFFLE_BUFFER = 10_000
# pass_seed(seed, p) = seed * PASS_STRIDE + p: distinct for every (seed, pass) of any run shorter than a
# million passes.
PASS_STRIDE = 1_000_003


def pass_seed(seed: int, index) -> tf.Tensor:
    """The shuffle (and binarization) seed of pass ``index`` of a run with ``seed`` (int64 tensor)."""
    return tf.cast(seed, tf.int64) * PASS_STRIDE + tf.cast(index, tf.int64)


def _scale(x, data_range: str, dtype: str):
    """uint8 images to [0, 1] (unit) or [-1, 1] (symmetric); float data in [0, 1] to [-1, 1] for symmetric."""
    x = tf.cast(x, tf.float32)
    if dtype == "uint8":
        return x / 255.0 if data_range == "unit" else x / 127.5 - 1.0
    return 2.0 * x - 1.0 if data_range == "symmetric" else x


def _binarize(x, key):
    """A Bernoulli(x) draw of every pixel from the stateless generator keyed by ``key`` (2 int64)."""
    return tf.cast(tf.random.stateless_uniform(tf.shape(x), seed=key) < x, tf.float32)


def _shuffled(split: tf.data.Dataset, key, block: int) -> tf.data.Dataset:
    """``split`` with each block of ``block`` consecutive examples permuted by the stateless generator
    keyed by (key, block index)."""
    def permute(index, examples):
        size = tf.shape(tf.nest.flatten(examples)[0])[0]
        order = tf.random.experimental.stateless_shuffle(tf.range(size), seed=tf.stack([key, index]))
        return tf.data.Dataset.from_tensor_slices(tf.nest.map_structure(lambda t: tf.gather(t, order), examples))

    return split.batch(block).enumerate().flat_map(permute)


def _examples(split: tf.data.Dataset, data_range: str, dtype: str, binarize: bool, key) -> tf.data.Dataset:
    """(x scaled, label int32) of ``split`` in its order; binarized with keys (key, index)."""
    def prepare(index, example):
        x, y = example
        x = _scale(x, data_range, dtype)
        if binarize:
            x = _binarize(x, tf.stack([tf.cast(key, tf.int64), index]))
        return x, tf.cast(y, tf.int32)

    return split.enumerate().map(prepare, num_parallel_calls=tf.data.AUTOTUNE)


def _check_binarize(binarize: bool, data_range: str) -> None:
    if binarize and data_range != "unit":
        raise DataError("--binarize needs data scaled to [0, 1]")


def pipeline(split: tf.data.Dataset, batch_size: int, data_range: str, dtype: str = "uint8",
             binarize: bool = False, seed: int = 0) -> tf.data.Dataset:
    """Batches of (x float32 in the model's range, label int32) in the split's own order: what
    evaluation, validation and the sample grids see. ``binarize``: a fixed draw keyed by (seed, index)."""
    _check_binarize(binarize, data_range)
    return _examples(split, data_range, dtype, binarize, seed).batch(batch_size).prefetch(tf.data.AUTOTUNE)


@dataclass
class TrainingBatches:
    """What ``fit()`` is given: ``dataset``, ``steps_per_epoch`` and, when an epoch is one pass, the
    variable ``epoch`` that must hold the epoch's index when its iteration starts
    (``kgen.callbacks.DataEpoch`` sets it)."""

    dataset: tf.data.Dataset
    steps_per_epoch: int | None
    epoch: tf.Variable | None


def training_batches(split: tf.data.Dataset, batch_size: int, data_range: str, dtype: str = "uint8", *,
                     seed: int = 0, binarize: bool = False, steps_per_epoch: int | None = None,
                     num_examples: int | None = None, initial_epoch: int = 0) -> TrainingBatches:
    """The training batches of a run from epoch ``initial_epoch`` on (see the module docstring).

    Without ``steps_per_epoch`` the dataset is one pass, the pass of the epoch variable, ending with a
    partial batch. With it, the dataset is an endless stream of passes, started where epoch
    ``initial_epoch`` begins (``num_examples``, the split's size, locates that point) and read on by fit()
    from one epoch to the next.
    """
    _check_binarize(binarize, data_range)
    buffer = min(SHUFFLE_BUFFER, num_examples or SHUFFLE_BUFFER)

    def one_pass(index):
        key = pass_seed(seed, index)
        return _examples(_shuffled(split, key, buffer), data_range, dtype, binarize, key)

    if steps_per_epoch is None:
        epoch = tf.Variable(initial_epoch, dtype=tf.int64, trainable=False, name="data_epoch")
        # The pass is chosen when an iteration starts (flat_map reads the variable then), so the one
        # dataset gives epoch e's order whenever fit() iterates it for epoch e.
        examples = tf.data.Dataset.from_tensors(0).flat_map(lambda _: one_pass(epoch.read_value()))
        dataset = examples.batch(batch_size)
        if num_examples is not None:  # flat_map hides the length; fit()'s progress bar wants it
            dataset = dataset.apply(tf.data.experimental.assert_cardinality(math.ceil(num_examples / batch_size)))
        return TrainingBatches(dataset.prefetch(tf.data.AUTOTUNE), None, epoch)

    if num_examples is None:
        num_examples = int(split.reduce(0, lambda count, _: count + 1))
    if num_examples == 0:
        raise DataError("the training split is empty")
    start = initial_epoch * steps_per_epoch * batch_size
    passes = tf.data.Dataset.range(start // num_examples, tf.int64.max).flat_map(one_pass)
    dataset = passes.skip(start % num_examples).batch(batch_size)
    return TrainingBatches(dataset.prefetch(tf.data.AUTOTUNE), steps_per_epoch, None)
