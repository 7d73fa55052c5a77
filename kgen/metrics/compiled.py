"""Run a keras.ops function of a model compiled, on any backend, without naming one.

Eager keras.ops are slow where it matters for the estimators (thousands of decoder calls):
JAX compiles every op for every new shape, PyTorch records an autograd graph. A Keras model's
``predict_on_batch`` is the backend-neutral way to get one compiled function instead
(``jax.jit`` on JAX, ``tf.function`` on TensorFlow, ``torch.no_grad`` on PyTorch), traced once
per input shape. ``compiled(model, fn)`` wraps ``fn(model, *inputs)`` in such a model.
"""

from __future__ import annotations

from collections.abc import Callable

import keras
import numpy as np


class _Wrapped(keras.Model):
    """fn(inner, *inputs) as a Keras model whose variables are the inner model's (and any ``state``)."""

    def __init__(self, inner, fn: Callable, state: dict | None = None):
        super().__init__(name="compiled_" + getattr(fn, "__name__", "function").strip("<>"))
        self.inner = inner
        self.fn = fn
        self.state = state or {}  # e.g. SeedGenerators: tracked, so their draws advance between calls
        self.built = True

    def call(self, inputs):
        return self.fn(self.inner, *inputs, **self.state)


def compiled(model, fn: Callable, **state) -> Callable[..., np.ndarray]:
    """A function of numpy arrays computing ``fn(model, *arrays, **state)``, compiled, returning numpy.

    ``fn`` must use keras.ops only; ``state``: Keras objects with variables that ``fn`` reads and
    updates (a ``keras.random.SeedGenerator``), passed by keyword.
    """
    wrapped = _Wrapped(model, fn, state)

    def run(*arrays):
        return wrapped.predict_on_batch(tuple(np.asarray(a) for a in arrays))

    return run


def compiled_batches(model, fn: Callable, x: np.ndarray, batch_size: int = 500) -> np.ndarray:
    """``fn(model, batch)`` over x in batches of one shape (the last one padded with copies of x[0], the
    padding dropped): one compilation whatever len(x) is."""
    x = np.asarray(x)
    batch_size = max(1, min(batch_size, len(x)))
    run = compiled(model, fn)
    out = []
    for start in range(0, len(x), batch_size):
        rows = x[start : start + batch_size]
        if len(rows) < batch_size:
            rows = np.concatenate([rows, np.repeat(x[:1], batch_size - len(rows), axis=0)])
        out.append(np.asarray(run(rows))[: min(batch_size, len(x) - start)])
    return np.concatenate(out)


__all__ = ["compiled", "compiled_batches"]
