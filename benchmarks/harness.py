"""What every benchmark worker shares: the run's settings, the data, the timers, the machine record,
the ratios, a hand-written JAX Adam, and ``measure`` (one worker in a fresh process).

Workers run one per process (one Keras backend per process). The settings of a measurement (batch
size, dtype policy, warm-up override, device) reach the worker through the ``KGEN_BENCH``
environment variable (JSON) and are read with ``batch_size()``, ``precision()``, ``warmup()``.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

LEARNING_RATE = 1e-3
WARMUP = 5  # steps run before timing (compilation) unless a module says otherwise
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")
DEVICES = ("cpu", "gpu")
# The CPU flags that decide float32 and bfloat16 matmul speed (recorded with every result).
CPU_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")
BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # hardware bfloat16 arithmetic on x86

DEFAULTS = {"batch": 128, "precision": "float32", "warmup": None, "device": "cpu"}
CONFIG = {**DEFAULTS, **json.loads(os.environ.get("KGEN_BENCH") or "{}")}


def batch_size() -> int:
    return int(CONFIG["batch"])


def precision() -> str:
    """The dtype policy kgen's model and the same-framework Keras reference are built under."""
    return CONFIG["precision"]


def warmup(default: int = WARMUP) -> int:
    """Steps before timing: the module's ``default`` unless the run overrides it (quick runs, tests)."""
    return default if CONFIG.get("warmup") is None else int(CONFIG["warmup"])


@contextlib.contextmanager
def dtype_policy(name: str | None = None):
    """Keras's global dtype policy set to ``name`` (default: the run's precision) while models are built."""
    import keras

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name or precision())
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def data(n: int | None = None) -> np.ndarray:
    """Random binary 28x28x1 images (throughput does not depend on the pixel values); 10 batches by default."""
    n = 10 * batch_size() if n is None else n
    return (np.random.default_rng(0).random((n, 28, 28, 1)) > 0.5).astype("float32")


def pipeline(flat: bool = False, symmetric: bool = False):
    """The tf.data pipeline kgen reads through fit() and the TF/JAX/PyTorch references iterate
    (as the TensorFlow and JAX tutorials do with tfds); ``symmetric``: pixels in [-1, 1] (GANs)."""
    import keras
    import tensorflow as tf

    if keras.backend.backend() != "tensorflow":
        try:  # TensorFlow only feeds batches here: the GPU stays the backend's
            tf.config.set_visible_devices([], "GPU")
        except RuntimeError:  # already initialised (a second pipeline in this process)
            pass
    images = data()
    images = images.reshape(len(images), -1) if flat else images
    images = 2.0 * images - 1.0 if symmetric else images
    return tf.data.Dataset.from_tensor_slices(images).repeat().batch(batch_size()).prefetch(tf.data.AUTOTUNE)


def time_fit(model, dataset, steps: int, warmup: int = WARMUP) -> float:
    """samples/s of ``model.fit`` over ``steps`` batches, after a ``warmup``-step fit (compilation).

    The model's steps_per_execution must divide both counts: Keras runs whole executions, so
    an epoch of 200 steps at 32 per execution would train 224 and be timed as 200."""
    import keras

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds = time.perf_counter() - self.start

    timer = Timer()
    model.fit(dataset, epochs=1, steps_per_epoch=warmup, verbose=0)
    model.fit(dataset, epochs=1, steps_per_epoch=steps, verbose=0, callbacks=[timer])
    return steps * batch_size() / timer.seconds


def timed(step, batches, steps: int, block, warmup: int = WARMUP) -> float:
    """samples/s of ``steps`` calls of ``step(next(batches))`` after ``warmup`` calls; ``block`` waits for
    the last result (asynchronous backends)."""
    for _ in range(warmup):
        out = step(next(batches))
    block(out)
    start = time.perf_counter()
    for _ in range(steps):
        out = step(next(batches))
    block(out)
    return steps * batch_size() / (time.perf_counter() - start)


def kgen_model(name: str, options: dict | None = None, learning_rate: float | None = None, jit: bool | None = None,
               steps: tuple = (), input_shape: tuple = (28, 28, 1)):
    """kgen's model ``name`` as ``kgen train`` builds it (``kgen.train.build_model`` of a TrainConfig), under
    the run's precision: ``TrainConfig(precision=...)`` where kgen has that field, and Keras's global dtype
    policy set while the model is built; compiled with kgen's options for fits of ``steps`` step counts."""
    import dataclasses

    from kgen.config import TrainConfig
    from kgen.models import get_model_class
    from kgen.train import build_model, compile_options

    cls = get_model_class(name)
    settings = {"model": name, "seed": 0, "jit": jit, "model_options": dict(options or {}),
                "learning_rate": cls.default_learning_rate if learning_rate is None else learning_rate,
                "steps_per_execution": compile_options(jit, steps=steps)["steps_per_execution"]}
    if "precision" in {f.name for f in dataclasses.fields(TrainConfig)}:
        settings["precision"] = precision()
    elif precision() == "mixed_float16":  # Keras would wrap kgen's optimizer container in a LossScaleOptimizer
        raise RuntimeError("mixed_float16 needs kgen's TrainConfig(precision=...) (loss scaling), which this kgen lacks")
    with dtype_policy():
        return build_model(TrainConfig(**settings), input_shape, cls.data_range)


def adam_update(params, grads, m, v, t):
    """One Adam(LEARNING_RATE) step on JAX pytrees, written out: returns (params, m, v, t)."""
    import jax
    import jax.numpy as jnp

    t = t + 1
    m = jax.tree.map(lambda a, g: 0.9 * a + 0.1 * g, m, grads)
    v = jax.tree.map(lambda a, g: 0.999 * a + 0.001 * g * g, v, grads)
    params = jax.tree.map(
        lambda w, a, s: w - LEARNING_RATE * (a / (1 - 0.9**t)) / (jnp.sqrt(s / (1 - 0.999**t)) + 1e-7), params, m, v)
    return params, m, v, t


def jax_adam_trainer(loss_fn, params):
    """A jitted step ``state, batch -> state, loss`` of Adam on ``loss_fn(params, x, key)``, and its first state."""
    import jax
    import jax.numpy as jnp

    @jax.jit
    def step(state, x):
        params, m, v, t, key = state
        key, subkey = jax.random.split(key)
        loss, grads = jax.value_and_grad(loss_fn)(params, x, subkey)
        return (*adam_update(params, grads, m, v, t), key), loss

    zeros = jax.tree.map(jnp.zeros_like, params)
    return step, (params, zeros, zeros, 0.0, jax.random.key(0))


def run_stateful(step, state, batches, steps: int, warmup: int = WARMUP) -> float:
    """``timed`` for a JAX ``state, batch -> state, loss`` step."""
    holder = {"state": state}

    def call(x):
        holder["state"], loss = step(holder["state"], x)
        return loss

    return timed(call, batches, steps, lambda loss: loss.block_until_ready(), warmup)


# -- the ratios ---------------------------------------------------------------------------------------
def median_ratio(values: list, references: list) -> dict:
    """Per-round ratios ``values[i] / references[i]`` (each round measured both back to back) and their
    median: the figure every table reports, robust to a round disturbed by the machine's other load."""
    if len(values) != len(references) or not values:
        raise ValueError(f"need one reference per round: {len(values)} values, {len(references)} references")
    ratios = [v / r for v, r in zip(values, references)]
    return {"ratios": ratios, "median": statistics.median(ratios)}


# -- the machine ------------------------------------------------------------------------------------------
def sgemm_gflops(n: int = 2048, repeats: int = 5) -> float:
    """numpy float32 matmul GFLOP/s (best of ``repeats``): this machine's ceiling, measured in the run."""
    a = np.random.rand(n, n).astype(np.float32)
    b = np.random.rand(n, n).astype(np.float32)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def load_average() -> float | None:
    """The 1-minute load average (runnable processes, this run's own included); None where unknown."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def _cpuinfo() -> tuple[str, set]:
    model, flags = platform.processor() or "unknown", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and model in ("unknown", "x86_64", ""):
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return model, flags


def _versions() -> dict:
    from importlib import metadata

    found = {"python": platform.python_version()}
    for package in ("keras", "tensorflow", "tensorflow-cpu", "jax", "jaxlib", "jax-cuda12-plugin", "torch", "numpy"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    return found


def _gpus() -> list[str]:
    if not shutil.which("nvidia-smi"):
        return []
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.stdout.splitlines() if line.strip()] if out.returncode == 0 else []


def machine_record(sgemm: list[float] | None = None) -> dict:
    """Where and when a result was measured: CPU model, cores, the flags that matter, numpy sgemm GFLOP/s
    measured in this run (``sgemm``: one figure per round; measured now when not given), the backends'
    versions, GPUs (nvidia-smi), the date."""
    model, flags = _cpuinfo()
    sgemm = [sgemm_gflops()] if sgemm is None else list(sgemm)
    try:
        available = len(os.sched_getaffinity(0))
    except AttributeError:
        available = os.cpu_count()
    return {
        "cpu_model": model,
        "cores": os.cpu_count(),
        "cores_available": available,
        "flags": {flag: flag in flags for flag in CPU_FLAGS},
        "sgemm_gflops": max(sgemm),
        "sgemm_gflops_per_round": sgemm,
        "versions": _versions(),
        "gpus": _gpus(),
        "platform": platform.platform(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


# -- the workers ------------------------------------------------------------------------------------------
def run_worker(module, implementation: str, name: str, steps: int, jit=None) -> float:
    """What a worker process runs: ``module.run_worker`` where the module has one; otherwise
    ``worker_kgen`` / ``worker_keras`` (the same-framework Keras train_step) / the backend's entry in
    ``PLAIN`` (the framework's own loop) / ``worker_keras_io`` of ``module``."""
    if hasattr(module, "run_worker"):
        return module.run_worker(implementation, name, steps, jit)
    import keras

    backend = keras.backend.backend()  # KERAS_BACKEND's, or Keras's default (in-process runs)
    if implementation == "kgen":
        return module.worker_kgen(name, steps, jit)
    if implementation == "keras":
        return module.worker_keras(name, steps, jit)
    if implementation == "plain":
        return module.PLAIN[backend](name, steps)
    if implementation == "keras-io":
        return module.worker_keras_io(name, steps)
    raise ValueError(f"unknown implementation {implementation!r}")


def child_environment(backend: str, settings: dict) -> dict:
    """The environment of a worker process: the backend, the settings, the device (``cpu`` hides GPUs)."""
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3", "KGEN_BENCH": json.dumps(settings)}
    # JAX keeps compiled steps on disk: a later round's (untimed) compilation of the same step is a lookup
    env.setdefault("JAX_COMPILATION_CACHE_DIR", str(Path(__file__).resolve().parent / "results" / "jax-cache"))
    env.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    if settings.get("device", "cpu") == "cpu":
        env.update(CUDA_VISIBLE_DEVICES="-1", JAX_PLATFORMS="cpu")
    return env


def measure(backend: str, module: str, *args, settings: dict | None = None, timeout: int = 1200) -> float:
    """``run_worker(module, *args)`` in a fresh process on ``backend`` (one Keras backend per process)."""
    here = os.path.dirname(os.path.abspath(__file__))
    code = (f"import sys, json; sys.path.insert(0, {here!r}); import harness, {module} as b; "
            f"print('RESULT', json.dumps(harness.run_worker(b, *{args!r})))")
    env = child_environment(backend, {**DEFAULTS, **(settings or {})})
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=timeout,
                         check=False)
    lines = [line for line in out.stdout.splitlines() if line.startswith("RESULT ")]
    if not lines:
        raise RuntimeError(f"{module}{args} on {backend} failed:\n{out.stderr[-3000:]}")
    return json.loads(lines[-1][7:])


def measure_here(module: str, *args, settings: dict | None = None) -> float:
    """``run_worker`` in this process (its backend only): quick runs and tests, no process start-up."""
    import importlib

    previous = dict(CONFIG)
    CONFIG.update({**DEFAULTS, **(settings or {})})
    try:
        return run_worker(importlib.import_module(module), *args)
    finally:
        CONFIG.clear()
        CONFIG.update(previous)


# -- persistent workers: one long-lived process per backend -------------------------------------------------
def fresh_state() -> None:
    """Between two measurements in one worker: Keras's global state cleared, garbage collected, JAX's
    compiled functions dropped, so that each measurement builds and compiles from scratch as in a fresh
    process (what it cannot undo: the libraries' imports and thread pools, which is the point)."""
    import gc

    import keras

    keras.backend.clear_session(free_memory=True)
    if keras.backend.backend() == "jax":
        import jax

        jax.clear_caches()
    gc.collect()


def serve() -> None:
    """A persistent worker's loop: one JSON request per line of stdin ({"module", "args", "settings"}), one
    ``RESULT <json>`` or ``ERROR <json traceback>`` line per request on the original stdout. Anything else
    the libraries print (Python or C level) goes to stderr."""
    import importlib
    import traceback

    protocol = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    for line in sys.stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        try:
            importlib.import_module(request["module"])
            fresh_state()
            value = measure_here(request["module"], *request["args"], settings=request["settings"])
            protocol.write("RESULT " + json.dumps(value) + "\n")
        except Exception:  # noqa: BLE001 - reported to the parent, the worker goes on
            protocol.write("ERROR " + json.dumps(traceback.format_exc()[-3000:]) + "\n")
        protocol.flush()


class Workers:
    """One persistent worker process per backend (``serve``), started on first use: the same measurements
    as ``measure`` without a process start-up (imports, thread pools) per measurement. Requests go one at
    a time, so an idle worker waits on its stdin and takes no CPU. A worker that fails to answer within
    the timeout, or dies, is killed and replaced by a fresh one at its backend's next measurement."""

    def __init__(self, device: str = "cpu", log_dir: str | os.PathLike | None = None):
        self.device = device
        self.log_dir = Path(log_dir) if log_dir else None
        self.processes: dict[str, subprocess.Popen] = {}
        self.logs: dict[str, object] = {}

    def _start(self, backend: str) -> subprocess.Popen:
        import tempfile

        here = os.path.dirname(os.path.abspath(__file__))
        env = child_environment(backend, {**DEFAULTS, "device": self.device})
        if self.log_dir:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            log = open(self.log_dir / f"worker-{backend}.log", "a+")  # noqa: SIM115 - closed in close()
        else:
            log = tempfile.TemporaryFile("a+")  # noqa: SIM115 - closed in close()
        self.logs[backend] = log
        code = f"import sys; sys.path.insert(0, {here!r}); import harness; harness.serve()"
        process = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                   stderr=log, text=True, env=env, bufsize=1)
        self.processes[backend] = process
        return process

    def _log_tail(self, backend: str) -> str:
        log = self.logs.get(backend)
        if log is None:
            return ""
        log.flush()
        log.seek(0)
        return log.read()[-3000:]

    def _stop(self, backend: str, kill: bool = False) -> None:
        process = self.processes.pop(backend, None)
        if process is not None:
            if kill:
                process.kill()
            else:
                with contextlib.suppress(OSError, ValueError):
                    process.stdin.close()
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
            process.wait()
        log = self.logs.pop(backend, None)
        if log is not None:
            log.close()

    def measure(self, backend: str, module: str, *args, settings: dict | None = None, timeout: int = 1200) -> float:
        import select

        process = self.processes.get(backend)
        if process is None or process.poll() is not None:
            if process is not None:
                self._stop(backend)
            process = self._start(backend)
        request = {"module": module, "args": list(args), "settings": {**DEFAULTS, "device": self.device,
                                                                      **(settings or {})}}
        try:
            process.stdin.write(json.dumps(request) + "\n")
            process.stdin.flush()
        except (BrokenPipeError, OSError) as error:
            tail = self._log_tail(backend)
            self._stop(backend, kill=True)
            raise RuntimeError(f"the {backend} worker is gone ({error}):\n{tail}") from None
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([process.stdout], [], [], left)[0]:
                tail = self._log_tail(backend)
                self._stop(backend, kill=True)
                raise TimeoutError(f"{module}{tuple(args)} on {backend}: no answer in {timeout} s:\n{tail}")
            line = process.stdout.readline()
            if not line:
                tail = self._log_tail(backend)
                self._stop(backend, kill=True)
                raise RuntimeError(f"{module}{tuple(args)} on {backend}: the worker died:\n{tail}")
            if line.startswith("RESULT "):
                return json.loads(line[7:])
            if line.startswith("ERROR "):
                raise RuntimeError(f"{module}{tuple(args)} on {backend} failed:\n{json.loads(line[6:])}")

    def close(self) -> None:
        for backend in list(self.processes):
            self._stop(backend)
