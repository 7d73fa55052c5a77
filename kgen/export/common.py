"""What every part of `kgen export` shares: the layout's names, tolerances, the two errors."""

from __future__ import annotations

import errno
import os
import re
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

DEFAULT_OUT = "saved_models"
# What an export computes in: a mixed-precision run is served in float32 (its variables are float32;
# 16-bit arithmetic differs between backends by more than the check's tolerance and gains little on
# the CPUs TF Serving usually runs on).
SERVING_PRECISION = "float32"
# --check: max |SavedModel - Keras| over every output, and the batch sizes every signature runs at.
# Absolute for outputs within [-1, 1] (images, probabilities); relative to the largest value beyond
# (codes): JAX/PyTorch and TensorFlow sum a matmul in different orders, a float32 rounding of ~1e-7
# of the magnitude, which an absolute bound would turn into false alarms on codes of size 100.
TOLERANCE = 1e-5
CHECK_BATCHES = (1, 7, 64)
# `sample` references are drawn one seed at a time (an RBM runs a whole Gibbs chain per seed).
SAMPLE_REFERENCES = 8
# Ops that need a Python interpreter or a JAX/XLA runtime TF Serving may lack.
FORBIDDEN_OPS = frozenset({"PyFunc", "PyFuncStateless", "EagerPyFunc", "XlaCallModule"})
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
NO_SERVING_API = ("--warmup needs the tensorflow-serving-api package: pip install --no-deps tensorflow-serving-api "
                  "(with its dependencies it would install the `tensorflow` package over tensorflow-cpu; "
                  "`make setup` installs it this way)")
META_FILE = "assets.extra/kgen.json"
REQUESTS_DIR = "assets.extra/requests"
WARMUP_FILE = "assets.extra/tf_serving_warmup_requests"


class ExportError(ValueError):
    """Bad input (run, name, version, output folder, signature); the message is for the user."""


class ExportFailed(RuntimeError):
    """The export was written but is wrong (forbidden ops, outputs that differ from Keras)."""


# Errors that mean the file system refused a write. TensorFlow's C++ writers report them as an
# OpError whose message holds "PATH; <strerror>" (a full disk: ResourceExhaustedError from SaveV2).
WRITE_ERRNOS = tuple(getattr(errno, name) for name in ("ENOSPC", "EDQUOT", "EFBIG", "EROFS", "EACCES", "EIO")
                     if hasattr(errno, name))


def write_error(exc: BaseException) -> tuple[str, str | None] | None:
    """(what went wrong, the file if known) when ``exc`` is a refused write, else None."""
    if isinstance(exc, OSError):
        return (exc.strerror or str(exc)).lower(), exc.filename
    tf = sys.modules.get("tensorflow")
    if tf is not None and isinstance(exc, tf.errors.OpError):
        for number in WRITE_ERRNOS:
            found = re.search(rf"(\S+); {re.escape(os.strerror(number))}", exc.message)
            if found:
                return os.strerror(number).lower(), found.group(1)
    return None


@contextmanager
def writing(where: Path) -> Iterator[None]:
    """A refused write (a full disk above all) inside the block becomes one ExportFailed line that
    says what and where (the file, else ``where``), instead of a traceback."""
    try:
        yield
    except Exception as exc:
        refused = write_error(exc)
        if refused is None:
            raise
        reason, filename = refused
        raise ExportFailed(f"{reason}: {filename or where}; nothing was exported") from None
