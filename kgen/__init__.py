"""kgen: train autoencoders, VAEs, GANs, adversarial autoencoders and RBMs with Keras 3.

Importing ``kgen`` does not import Keras, so the backend can still be chosen
(``KERAS_BACKEND`` or :func:`kgen.set_backend`) after ``import kgen``.
"""

from __future__ import annotations

import json
import os
import sys

__version__ = "0.1.0"

BACKENDS = ("tensorflow", "jax", "torch")


def active_backend() -> str:
    """The Keras backend this process uses (or will use once Keras is imported): Keras's own answer
    when it is imported, else $KERAS_BACKEND, else Keras's config file, else tensorflow."""
    if "keras" in sys.modules:
        return sys.modules["keras"].backend.backend()
    if os.environ.get("KERAS_BACKEND"):
        return os.environ["KERAS_BACKEND"]
    config = os.path.join(os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras"), "keras.json")
    try:
        with open(config) as f:
            return json.load(f).get("backend", "tensorflow")
    except (OSError, ValueError, AttributeError):
        return "tensorflow"


def set_backend(name: str) -> None:
    """Select the Keras backend; must run before Keras is first imported."""
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
