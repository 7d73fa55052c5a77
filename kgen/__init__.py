"""kgen: train autoencoders, VAEs, GANs, adversarial autoencoders and RBMs with Keras 3.

Importing ``kgen`` does not import Keras, so the backend can still be chosen
(``KERAS_BACKEND`` or :func:`kgen.set_backend`) after ``import kgen``.
"""

from __future__ import annotations

import os

__version__ = "0.1.0"

BACKENDS = ("tensorflow", "jax", "torch")


def set_backend(name: str) -> None:
    """Select the Keras backend; must run before Keras is first imported."""
    import sys

    if name not in BACKENDS:
        raise ValueError(f"unknown backend '{name}'; choose one of: {', '.join(BACKENDS)}")
    if "keras" in sys.modules:
        import keras

        if keras.backend.backend() != name:
            raise RuntimeError(
                f"Keras is already running on '{keras.backend.backend()}'; "
                "set the backend before importing keras"
            )
    os.environ["KERAS_BACKEND"] = name
