"""A model's outputs over arrays, in batches, as numpy: codes, reconstructions, their 2-D picture.

Used by training (the grids), evaluation, metrics and tuning alike, so it sits below all of them.
"""

from __future__ import annotations

import keras
import numpy as np

from kgen import images
from kgen.models import Ability, can


def batched(fn, x, batch_size: int = 256):
    """fn over x in batches, outputs as numpy; a tuple output (a VAE's encode) gives a tuple of arrays.

    ``x`` may be a tuple of equally long arrays (images and labels): fn then takes one batch of each."""
    arrays = x if isinstance(x, tuple) else (x,)
    outputs = [fn(*(a[i : i + batch_size] for a in arrays)) for i in range(0, len(arrays[0]), batch_size)]
    if isinstance(outputs[0], (tuple, list)):
        return tuple(np.concatenate([keras.ops.convert_to_numpy(o[j]) for o in outputs]) for j in range(len(outputs[0])))
    return np.concatenate([keras.ops.convert_to_numpy(o) for o in outputs])


def codes_of(model, x: np.ndarray) -> np.ndarray:
    """The model's codes for x: ``encode``'s output, the posterior mean for a VAE."""
    codes = batched(model.encode, x)
    return codes[0] if isinstance(codes, tuple) else codes


def pca_basis(x: np.ndarray, k: int) -> np.ndarray:
    """Top-k principal directions of x (rows = examples) as columns of a (features x k) matrix."""
    flat = x.reshape(len(x), -1).astype("float64")
    _, _, vt = np.linalg.svd(flat - flat.mean(axis=0), full_matrices=False)
    return vt[:k].T


def projector_2d(codes: np.ndarray):
    """The map of codes (and of prior draws beside them) to 2-D points: the identity when the codes
    have at most 2 dimensions, else the projection on the codes' first two principal components."""
    codes = codes.reshape(len(codes), -1).astype("float64")
    if codes.shape[1] <= 2:
        return lambda points: np.pad(points.reshape(len(points), -1), ((0, 0), (0, 2 - codes.shape[1])))
    mean, basis = codes.mean(axis=0), pca_basis(codes, 2)
    # Fewer than 3 codes span fewer than 2 components: the missing axis is 0.
    basis = np.pad(basis, ((0, 0), (0, 2 - basis.shape[1])))
    return lambda points: (points.reshape(len(points), -1) - mean) @ basis


def project_2d(codes: np.ndarray) -> np.ndarray:
    """Codes as 2-D points: themselves when 2-D, else their first two principal components."""
    return projector_2d(codes)(codes.astype("float64"))


def reconstructions(model, x: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The model's reconstructions of x (a supervised AAE's decoder takes the labels too)."""
    if can(model, Ability.LABELLED_RECONSTRUCTION):
        return batched(lambda b, y: model.reconstruct(b, model.condition_of_labels(len(y), y)), (x, labels))
    return batched(model.reconstruct, x)


def code_scatter(model, x: np.ndarray, labels: np.ndarray, seed: int = 0, codes: np.ndarray | None = None) -> np.ndarray:
    """RGB image of the 2-D projection of x's codes (``codes`` when the caller has them), coloured by
    label; over the density of prior draws (projected the same way) for models with a prior on their codes (the AAE)."""
    codes = codes_of(model, x) if codes is None else codes
    latent = codes.shape[1]
    title = "codes" if latent <= 2 else f"codes: first two principal components of {latent}-D"
    project = projector_2d(codes)
    background = None
    if can(model, Ability.CODE_PRIOR):
        prior = keras.ops.convert_to_numpy(model.sample_prior(max(len(codes), 2000), seed=seed))
        background, title = project(prior), title + " over the prior's density (grey)"
    return images.scatter(project(codes.astype("float64")), labels, title=title, background=background)


