"""The only package that names tensorflow, jax or torch for training.

Each backend has one thin shell (a ``keras.Model`` subclass) that runs a
model's training phases in ``train_step``/``test_step``, and one
``input_gradient`` helper (and ``batch_jacobian``), plus ``conv_transpose`` (``keras.ops.conv_transpose``
with a faster gradient on JAX). This module picks the pair matching the active
Keras backend, so a model definition written in ``keras.ops`` trains on all
three.
"""

from __future__ import annotations

import keras

_BACKEND = keras.backend.backend()

conv_transpose = keras.ops.conv_transpose  # replaced on JAX below

if _BACKEND == "tensorflow":
    from kgen.backend.tensorflow import PhasedTrainer, batch_jacobian, input_gradient
elif _BACKEND == "jax":
    from kgen.backend.jax import PhasedTrainer, batch_jacobian, conv_transpose, input_gradient
elif _BACKEND == "torch":
    from kgen.backend.torch import PhasedTrainer, batch_jacobian, input_gradient
else:  # pragma: no cover - keras refuses other values first
    raise ImportError(f"kgen supports the tensorflow, jax and torch backends, not {_BACKEND!r}")

__all__ = ["PhasedTrainer", "batch_jacobian", "conv_transpose", "input_gradient"]
