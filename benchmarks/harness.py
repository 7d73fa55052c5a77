"""What every benchmark worker shares: the data, the pipeline, the timers, a hand-written JAX Adam.

Workers run one per process (one Keras backend per process); ``measure`` starts them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np

BATCH = 128
LEARNING_RATE = 1e-3
WARMUP = 5  # steps run before timing (compilation)


def data(n: int = 1280) -> np.ndarray:
    """Random binary 28x28x1 images (throughput does not depend on the pixel values)."""
    return (np.random.default_rng(0).random((n, 28, 28, 1)) > 0.5).astype("float32")


def pipeline(flat: bool = False, symmetric: bool = False):
    """The tf.data pipeline kgen reads through fit() and the TF/JAX/PyTorch references iterate
    (as the TensorFlow and JAX tutorials do with tfds); ``symmetric``: pixels in [-1, 1] (GANs)."""
    import tensorflow as tf

    images = data()
    images = images.reshape(len(images), -1) if flat else images
    images = 2.0 * images - 1.0 if symmetric else images
    return tf.data.Dataset.from_tensor_slices(images).repeat().batch(BATCH).prefetch(tf.data.AUTOTUNE)


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
    return steps * BATCH / timer.seconds


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
    return steps * BATCH / (time.perf_counter() - start)


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


def run_worker(module, *args) -> float:
    """What a worker process runs: ``module.run_worker(*args)`` where the module has one; otherwise a
    model suite's ``(implementation, name, steps)``: ``worker_kgen``, or the reference written in this
    process's backend (``worker_tensorflow`` / ``worker_jax`` / ``worker_torch``)."""
    if hasattr(module, "run_worker"):
        return module.run_worker(*args)
    implementation, name, steps = args
    backend = os.environ["KERAS_BACKEND"]
    worker = module.worker_kgen if implementation == "kgen" else getattr(module, f"worker_{backend}")
    return worker(name, steps)


def measure(backend: str, module: str, *args) -> float:
    """``run_worker(module, *args)`` in a fresh process on ``backend`` (one Keras backend per process)."""
    code = (
        "import sys, json; sys.path.insert(0, %r); import harness, %s as b; "
        "print('RESULT', json.dumps(harness.run_worker(b, *%r)))"
        % (os.path.dirname(os.path.abspath(__file__)), module, args)
    )
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=1200)
    lines = [line for line in out.stdout.splitlines() if line.startswith("RESULT ")]
    if not lines:
        raise RuntimeError(f"{module}{args} on {backend} failed:\n{out.stderr[-3000:]}")
    return json.loads(lines[-1][7:])
