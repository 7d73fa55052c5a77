"""The CLI's quiet mode (everything but ``--verbose``): kgen's own lines only, on every machine.

TF_CPP_MIN_LOG_LEVEL silences TensorFlow's C++ log once its logging is set up, but not the lines
absl writes before ``absl::InitializeLog()`` is called: those ignore every threshold (abseil-cpp
pull requests #1718 and #1957, unmerged). TensorFlow 2.21 writes two such pairs while its library
loads on CPUs where oneDNN's custom operations are on by default (AVX512-VNNI, AVX512-BF16, AMX):

    WARNING: All log messages before absl::InitializeLog() is called are written to STDERR
    I0000 00:00:1796216020.235150   24072 port.cc:153] oneDNN custom operations are on. ...

so on those machines every command would print four lines before its one-line answer. They are
written by C++ to file descriptor 2, out of Python's reach; ``quiet_backends`` therefore runs the
first ``import tensorflow`` with descriptor 2 sent to a temporary file and copies what was written
back to stderr afterwards, less absl's INFO and WARNING lines (``ABSL_STARTUP_LINE``). Errors, fatal
lines and Python's own output during the import pass through, in their order.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import logging
import os
import re
import sys
import tempfile
import warnings
from typing import Iterator

# absl's line before logging is initialised, and its INFO (I) and WARNING (W) lines:
# "I0000 00:00:1796216020.235150   24072 port.cc:153] message" (severity, MMDD, time, thread, file:line).
ABSL_STARTUP_LINE = re.compile(
    r"WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|[IW]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ [^ \]]+:\d+\] .*")
# Packages whose first import writes absl lines while their native libraries load.
NOISY_IMPORTS = ("tensorflow",)


@contextlib.contextmanager
def native_stderr_filtered() -> Iterator[None]:
    """Run the block with file descriptor 2 in a temporary file; then write back to stderr every
    line of it except absl's INFO/WARNING lines. A process killed inside the block loses what the
    block wrote (``--verbose`` skips the filter)."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with tempfile.TemporaryFile() as captured:
            os.dup2(captured.fileno(), 2)
            try:
                yield
            finally:
                sys.stderr.flush()
                os.dup2(saved, 2)
                captured.seek(0)
                lines = captured.read().decode(errors="replace").splitlines(keepends=True)
                kept = "".join(line for line in lines if not ABSL_STARTUP_LINE.fullmatch(line.rstrip("\r\n")))
                if kept:
                    os.write(2, kept.encode())
    finally:
        os.close(saved)


class _FilteredLoader(importlib.abc.Loader):
    """The real loader of a module, executing it under ``native_stderr_filtered``."""

    def __init__(self, loader: importlib.abc.Loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module) -> None:
        # The module keeps its own loader (importlib.resources and friends ask it for files).
        module.__loader__ = module.__spec__.loader = self.loader
        with native_stderr_filtered():
            self.loader.exec_module(module)


class FilteredImports(importlib.abc.MetaPathFinder):
    """A ``sys.meta_path`` finder for ``names``: it asks the other finders for the module and wraps
    the loader found, so that executing the module (its first import: later ones come from
    sys.modules) runs under ``native_stderr_filtered``. A lookup that does not import (torch asks
    ``importlib.util.find_spec("tensorflow")``) executes nothing and filters nothing."""

    def __init__(self, names: tuple[str, ...] = NOISY_IMPORTS):
        self.names = frozenset(names)

    def find_spec(self, fullname, path, target=None):
        if fullname not in self.names:
            return None
        for finder in [f for f in sys.meta_path if f is not self and hasattr(f, "find_spec")]:
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _FilteredLoader(spec.loader)
                return spec
        return None


def filter_native_startup_lines(names: tuple[str, ...] = NOISY_IMPORTS) -> None:
    """From now on, the first import of each of ``names`` drops absl's startup lines."""
    if not any(isinstance(finder, FilteredImports) for finder in sys.meta_path):
        sys.meta_path.insert(0, FilteredImports(names))


def quiet_backends(verbose: bool) -> None:
    """Unless --verbose: no C++ log lines from TensorFlow/XLA (oneDNN, cpu_feature_guard, grappler's
    remapper; absl's lines before its logging is initialised), no Python-logging warnings from
    TensorFlow/absl (retracing), no Python warnings. Set before any backend is imported; kgen's own
    messages and errors are unaffected."""
    if verbose:
        return
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    filter_native_startup_lines()
    for name in ("tensorflow", "absl", "jax", "h5py"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
