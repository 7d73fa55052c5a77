"""Shared fixtures. The suite runs once per backend: KERAS_BACKEND=tensorflow|jax|torch."""

from __future__ import annotations

import gzip
import hashlib
import os
import signal
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

os.environ["KGEN_OFFLINE"] = "1"  # never try to download; fallbacks are what we test
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402

BACKEND = keras.backend.backend()
ROOT = Path(__file__).resolve().parents[1]
OTHER_BACKEND = {"tensorflow": "jax", "jax": "torch", "torch": "tensorflow"}[BACKEND]


# Behaviour that does not depend on the backend (the command line's parsing and messages, files
# written and read, signals, the docs) is tested once per `make test`, not once per backend: a test
# marked `one_backend` runs on the backend a hash of its id picks (the three passes of `make test`
# share them out). KGEN_TEST_ALL_BACKENDS=1 runs every test on every backend.
BACKENDS = ("tensorflow", "jax", "torch")
ALL_BACKENDS = os.environ.get("KGEN_TEST_ALL_BACKENDS") == "1"


def rotation_backend(test_id: str) -> str:
    """The backend that runs a `one_backend` test: a stable hash of its id (file::name[params])."""
    return BACKENDS[int(hashlib.sha256(test_id.encode()).hexdigest(), 16) % len(BACKENDS)]


def pytest_configure(config):
    config.addinivalue_line("markers", "one_backend: backend-independent behaviour, run on one backend per "
                                       "`make test` (rotation_backend); KGEN_TEST_ALL_BACKENDS=1 runs it everywhere")


# The files that take longest (seconds of one pass, measured with KGEN_TEST_TIMES), run first: pytest-xdist's
# --dist loadfile hands whole files to the workers in collection order, so a long file started last keeps one
# worker busy while the other idles (longest first is the classic remedy for that tail).
LONG_FILES = {"test_notebook.py": 300, "test_distributed.py": 200, "test_export.py": 150, "test_faults.py": 150,
              "test_tune.py": 150, "test_tune_distributed.py": 120, "test_distributed_cli.py": 120, "test_gan.py": 120,
              "test_cli.py": 100}


def pytest_collection_modifyitems(config, items):
    items.sort(key=lambda item: -LONG_FILES.get(item.path.name, 0))  # stable: a file's tests keep their order
    if ALL_BACKENDS:
        return
    for item in items:
        if item.get_closest_marker("one_backend") is not None:
            chosen = rotation_backend(item.nodeid)
            if chosen != BACKEND:
                item.add_marker(pytest.mark.skip(reason=f"backend-independent: runs in the {chosen} pass"))


LAUNCHER_ENVIRONMENT = ("TF_CONFIG", "RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT",
                        "KERAS_DISTRIBUTION_JOB_ADDRESSES", "KERAS_DISTRIBUTION_NUM_PROCESSES",
                        "KERAS_DISTRIBUTION_PROCESS_ID", "KERASTUNER_TUNER_ID", "KERASTUNER_ORACLE_IP",
                        "KERASTUNER_ORACLE_PORT")


@pytest.fixture(autouse=True)
def _launcher_environment_is_left_as_found():
    """A test (or the code under test) that leaves a cluster description in this process's environment
    turns every later single-process run into a worker waiting for a coordinator: fail the test that
    did it, and restore the environment so the rest of the suite is not hit as well."""
    before = {name: os.environ.get(name) for name in LAUNCHER_ENVIRONMENT}
    yield
    after = {name: os.environ.get(name) for name in LAUNCHER_ENVIRONMENT}
    for name, value in before.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    changed = sorted(name for name in LAUNCHER_ENVIRONMENT if before[name] != after[name])
    assert not changed, f"the test left {changed} changed in the process environment"


@pytest.fixture(autouse=True)
def _signal_handlers_are_left_as_found():
    """A test (or the code under test) that leaves SIGINT or SIGTERM handled differently (ignored,
    a handler of its own) changes what every later in-process command and every child process does
    with Ctrl-C and SIGTERM: fail the test that did it, and restore the handlers."""
    before = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    yield
    changed = [f"{signal.Signals(signum).name} ({handler!r} -> {signal.getsignal(signum)!r})"
               for signum, handler in before.items() if signal.getsignal(signum) != handler]
    for signum, handler in before.items():
        if handler is not None:
            signal.signal(signum, handler)
    assert not changed, f"the test left the handlers of {changed} changed"


def invoke(*args):
    """``kgen ARGS`` in this process through Typer's CliRunner (every argument passed as a string)."""
    from typer.testing import CliRunner

    from cli.main import app

    return CliRunner().invoke(app, [str(a) for a in args])


def np_(x) -> np.ndarray:
    """Any backend's tensor as a numpy array."""
    return keras.ops.convert_to_numpy(x)


def write_idx(path: Path, array: np.ndarray) -> None:
    """IDX: two zero bytes, type code, ndim, big-endian int32 dims, big-endian data."""
    codes = {np.dtype(np.uint8): 0x08, np.dtype(np.int32): 0x0C, np.dtype(np.float32): 0x0D}
    header = bytes([0, 0, codes[array.dtype], array.ndim]) + struct.pack(f">{array.ndim}i", *array.shape)
    data = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    if path.suffix == ".gz":
        with gzip.open(path, "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)


def digit_like_images(n: int, size: int = 28, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Small structured uint8 images (a bright bar whose position is the class) and labels."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n)
    images = (rng.random((n, size, size)) * 40).astype(np.uint8)
    for i, label in enumerate(labels):
        row = 2 + int(label) * (size - 4) // 10
        images[i, row : row + 2, 4 : size - 4] = 255
    return images, labels.astype(np.uint8)


@pytest.fixture(scope="session")
def idx_folder(tmp_path_factory) -> Path:
    """A tiny MNIST-format dataset: gzipped IDX train/test images and labels."""
    folder = tmp_path_factory.mktemp("idx")
    x, y = digit_like_images(160)
    xt, yt = digit_like_images(40, seed=1)
    write_idx(folder / "train-images-idx3-ubyte.gz", x)
    write_idx(folder / "train-labels-idx1-ubyte.gz", y)
    write_idx(folder / "t10k-images-idx3-ubyte.gz", xt)
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", yt)
    return folder


def _kgen_command(args, env: dict | None) -> tuple[list[str], dict]:
    """The real `kgen` console script's command line, and its environment (this backend)."""
    kgen = Path(sys.executable).with_name("kgen")
    return [str(kgen), *map(str, args)], {**os.environ, "KERAS_BACKEND": BACKEND, **(env or {})}


def run_kgen(*args: str, env: dict | None = None, timeout: float = 300, **kwargs) -> subprocess.CompletedProcess:
    """The real `kgen` console script in a subprocess."""
    command, full_env = _kgen_command(args, env)
    return subprocess.run(command, capture_output=True, text=True, env=full_env, timeout=timeout, **kwargs)


def start_kgen(*args, env: dict | None = None, **kwargs) -> subprocess.Popen:
    """The real `kgen` console script, started and left running: the caller waits for it or kills it."""
    command, full_env = _kgen_command(args, env)
    return subprocess.Popen(command, text=True, env=full_env, **kwargs)


# KGEN_TEST_TIMES=FILE appends "seconds<TAB>backend<TAB>phase<TAB>test id" for every test's setup, call and
# teardown (0.5 s or more) as it ends, so the slow tests of a run that is cut short are still known. Written by
# the process that runs pytest (pytest-xdist's workers forward their reports to it).
TIMES_FILE = os.environ.get("KGEN_TEST_TIMES")


def pytest_runtest_logreport(report):
    if TIMES_FILE and report.duration >= 0.5 and "PYTEST_XDIST_WORKER" not in os.environ:
        with open(TIMES_FILE, "a") as out:
            out.write(f"{report.duration:.2f}\t{BACKEND}\t{report.when}\t{report.nodeid}\n")
