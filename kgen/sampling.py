"""Drawing from trained generators: batches of samples, latent interpolations, as numpy.

A generator is any model with ``sample(n, seed, labels)``; interpolation also needs
``sample_latent(n, seed)`` and ``generate(latent, condition)`` (every GAN, the VAE).
"""

from __future__ import annotations

import numpy as np
from keras import ops


def can_sample(model) -> bool:
    return hasattr(model, "sample")


def is_conditional(model) -> bool:
    """Does the model draw samples for given labels (``model.num_classes`` of them)?"""
    return hasattr(model, "condition_of_labels") and getattr(model, "num_classes", None) is not None


def default_labels(model, n: int) -> np.ndarray:
    """The labels a conditional model draws n samples for by default: 0, 1, ..., C-1, 0, 1, ..."""
    return np.arange(n) % model.num_classes


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


def sample_batches(model, n: int, seed: int = 0, labels=None, batch_size: int = 500) -> np.ndarray:
    """n samples in the model's data range; batch i uses seed + i (reproducible for a given batch size).

    Conditional models draw for ``labels`` (an int or one per sample), by default ``default_labels``."""
    if labels is None and is_conditional(model):
        labels = default_labels(model, n)
    if labels is not None:
        labels = np.broadcast_to(np.asarray(labels), (n,))
    out = []
    for i, start in enumerate(range(0, n, batch_size)):
        size = min(batch_size, n - start)
        kwargs = {} if labels is None else {"labels": labels[start : start + size]}
        out.append(ops.convert_to_numpy(model.sample(size, seed=seed + i, **kwargs)))
    return np.concatenate(out)


def style_grid(model, rows: int = 8, seed: int = 0) -> np.ndarray:
    """rows x C images: each row one latent draw (a "style"), each column a class, for models whose
    generator takes the label (Makhzani et al., Figure 7: content and style disentangled)."""
    if not (is_conditional(model) and getattr(model, "generator_takes_labels", True)
            and hasattr(model, "sample_latent") and hasattr(model, "generate")):
        raise ValueError(f"model '{model.model_name}' does not generate from a label and a style code "
                         "(the style grid is for aae --mode supervised|semi-supervised|clustering and cgan)")
    classes = model.num_classes
    latent = np.repeat(ops.convert_to_numpy(model.sample_latent(rows, seed=seed)), classes, axis=0)
    condition = model.condition_of_labels(rows * classes, np.tile(np.arange(classes), rows))
    return ops.convert_to_numpy(model.generate(latent, condition))


def slerp(z0: np.ndarray, z1: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Spherical interpolation between rows of z0 and z1 at fractions t (White 2016, "Sampling
    generative networks"): keeps the norm typical of a Gaussian latent, unlike a straight line."""
    z0, z1 = np.asarray(z0, np.float64), np.asarray(z1, np.float64)
    cos = np.sum(z0 * z1, -1) / (np.linalg.norm(z0, axis=-1) * np.linalg.norm(z1, axis=-1) + 1e-12)
    omega = np.arccos(np.clip(cos, -1.0, 1.0))[:, None, None]
    t = np.asarray(t, np.float64)[None, :, None]
    sin = np.sin(omega)
    linear = sin < 1e-6  # (anti)parallel rows: fall back to a straight line
    safe = np.where(linear, 1.0, sin)
    w0 = np.where(linear, 1.0 - t, np.sin((1.0 - t) * omega) / safe)
    w1 = np.where(linear, t, np.sin(t * omega) / safe)
    return (w0 * z0[:, None, :] + w1 * z1[:, None, :]).astype(np.float32)


def interpolation_grid(model, rows: int = 8, steps: int = 10, seed: int = 0, labels=None) -> np.ndarray:
    """rows x steps images: each row walks (slerp) from one latent draw to another.

    Conditional models keep one label per row (``labels``: an int or one per row; default 0, 1, ...).
    """
    if not hasattr(model, "sample_latent") or not hasattr(model, "generate"):
        raise ValueError(f"model '{model.model_name}' has no latent space to interpolate")
    z0 = ops.convert_to_numpy(model.sample_latent(rows, seed=seed))
    z1 = ops.convert_to_numpy(model.sample_latent(rows, seed=seed + 1))
    path = slerp(z0, z1, np.linspace(0.0, 1.0, steps)).reshape(rows * steps, -1)
    condition = None
    if is_conditional(model):
        row_labels = np.arange(rows) % model.num_classes if labels is None else np.broadcast_to(labels, (rows,))
        condition = model.condition_of_labels(rows * steps, np.repeat(row_labels, steps))
    elif labels is not None:
        model.condition_of_labels(rows, labels)  # raises: not conditional
    return ops.convert_to_numpy(model.generate(path, condition))


__all__ = ["can_sample", "default_labels", "interpolation_grid", "is_conditional", "label_array", "one_hot_labels",
           "sample_batches", "slerp", "style_grid"]
