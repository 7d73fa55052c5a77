"""Labels as the condition a conditional model takes (``Ability.CONDITIONAL``): checked, one-hot."""

from __future__ import annotations

import numpy as np
from keras import ops


def label_array(n: int, labels, num_classes: int) -> np.ndarray:
    """n int32 labels from ``labels`` (an int for all, one per sample, or None for 0, 1, ..., C-1, 0, ...),
    checked to lie in 0..C-1."""
    labels = np.arange(n) % num_classes if labels is None else labels
    labels = np.broadcast_to(np.asarray(labels, dtype="int64"), (n,))
    bad = labels[(labels < 0) | (labels >= num_classes)]
    if bad.size:
        raise ValueError(f"--label must be in 0..{num_classes - 1}, got {int(bad[0])}")
    return labels.astype("int32")


def one_hot_labels(n: int, labels, num_classes: int):
    """``label_array`` as one-hot rows (the condition a conditional generator takes)."""
    return ops.one_hot(ops.convert_to_tensor(label_array(n, labels, num_classes)), num_classes)
