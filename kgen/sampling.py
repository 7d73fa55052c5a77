"""Drawing from trained generators: batches of samples, latent interpolations, style grids, as numpy.

A generator is a model with ``Ability.SAMPLE``; interpolation also needs ``Ability.GENERATE`` (a
latent space: every GAN, the VAE, the AAE), the style grid ``Ability.LABELLED_GENERATOR``.
"""

from __future__ import annotations

import numpy as np
from keras import ops

from kgen import images
from kgen.models import Ability, can

# The grids a generator offers (``generator_grids``): TensorBoard and samples/ show every one the
# model has; `kgen sample` draws one (--interpolate, --style-grid, --traverse; samples by default).
GRID_KINDS = ("samples", "interpolation", "style_grid", "traversal")


def default_labels(model, n: int) -> np.ndarray:
    """The labels a conditional model draws n samples for by default: 0, 1, ..., C-1, 0, 1, ..."""
    return np.arange(n) % model.num_classes


def sample_batches(model, n: int, seed: int = 0, labels=None, batch_size: int = 500) -> np.ndarray:
    """n samples in the model's data range; batch i uses seed + i (reproducible for a given batch size).

    Conditional models draw for ``labels`` (an int or one per sample), by default ``default_labels``."""
    if labels is None and can(model, Ability.CONDITIONAL):
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
    if not can(model, Ability.CONDITIONAL, Ability.LABELLED_GENERATOR, Ability.GENERATE):
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
    if not can(model, Ability.GENERATE):
        raise ValueError(f"model '{model.model_name}' has no latent space to interpolate")
    z0 = ops.convert_to_numpy(model.sample_latent(rows, seed=seed))
    z1 = ops.convert_to_numpy(model.sample_latent(rows, seed=seed + 1))
    path = slerp(z0, z1, np.linspace(0.0, 1.0, steps)).reshape(rows * steps, -1)
    condition = None
    if can(model, Ability.CONDITIONAL):
        row_labels = np.arange(rows) % model.num_classes if labels is None else np.broadcast_to(labels, (rows,))
        condition = model.condition_of_labels(rows * steps, np.repeat(row_labels, steps))
    elif labels is not None:
        model.condition_of_labels(rows, labels)  # raises: not conditional
    return ops.convert_to_numpy(model.generate(path, condition))


def generator_grids(model, n: int = 64, seed: int = 0, label: int | None = None,
                    kinds: tuple[str, ...] = GRID_KINDS) -> dict[str, tuple[np.ndarray, int | None]]:
    """The ``kinds`` of grid ``model`` can draw, by name: (images in the model's range, columns).

    - ``samples``: n draws (of class ``label``; else one column per class for conditional models);
    - ``interpolation``: 8 latent walks of 10 steps (models with a latent space);
    - ``style_grid``: n // C rows of one style across the C classes (the generator takes the label);
    - ``traversal_<code>``: InfoGAN's code traversals.
    """
    out: dict[str, tuple[np.ndarray, int | None]] = {}
    conditional = can(model, Ability.CONDITIONAL)
    if "samples" in kinds:
        columns = model.num_classes if conditional and label is None else None
        count = columns * max(1, n // columns) if columns else n
        out["samples"] = (sample_batches(model, count, seed, label), columns)
    if "interpolation" in kinds and can(model, Ability.GENERATE):
        out["interpolation"] = (interpolation_grid(model, seed=seed, labels=label), 10)
    if "style_grid" in kinds and can(model, Ability.CONDITIONAL, Ability.LABELLED_GENERATOR, Ability.GENERATE):
        out["style_grid"] = (style_grid(model, rows=max(1, n // model.num_classes), seed=seed), model.num_classes)
    if "traversal" in kinds and can(model, Ability.TRAVERSE):
        out.update({f"traversal_{name}": grid for name, grid in model.traversal_grids(seed).items()})
    return out


def pictures(grids: dict[str, tuple[np.ndarray, int | None]], data_range: str) -> dict[str, np.ndarray]:
    """Each grid as one tiled [0, 1] image (grids whose entries are not images are left out)."""
    out = {}
    for name, (batch, columns) in grids.items():
        shown = images.to_display(ops.convert_to_numpy(batch), data_range)
        if shown is not None:
            out[name] = images.grid(shown, columns=columns)
    return out


__all__ = ["GRID_KINDS", "generator_grids", "pictures", "default_labels", "interpolation_grid", "sample_batches", "slerp", "style_grid"]
