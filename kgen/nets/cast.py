"""The float32 boundary of every network under a mixed-precision policy."""

from __future__ import annotations

import keras
from keras import layers


def float32_cast() -> list:
    """The cast layer for a ``keras.Sequential`` (none under float32)."""
    if keras.config.dtype_policy().compute_dtype == "float32":
        return []
    return [layers.Activation("linear", dtype="float32", name="float32_output")]


def float32_output(tensor):
    """``tensor`` as float32 when the networks are built under a mixed policy (the 16-bit layers
    before it, float32 after: the losses, densities and metrics computed on a network's outputs);
    unchanged under float32, where the network stays exactly as it was."""
    if keras.config.dtype_policy().compute_dtype == "float32":
        return tensor
    return layers.Activation("linear", dtype="float32", name="float32_output")(tensor)
