"""Precision and recall of a generator in a feature space (Kynkäänniemi et al. 2019).

Each set of feature vectors Phi estimates its distribution's support as the union of
hyperspheres around its points, each of radius NND_k(phi), the distance from phi to its k-th
nearest neighbour in Phi (itself excluded). A point phi is inside a set's manifold when

    f(phi, Phi) = 1  iff  ||phi - phi'||_2 <= NND_k(phi') for at least one phi' in Phi   (eq. 1)

and, for real features Phi_r and generated features Phi_g (eq. 2, 3),

    precision = mean over phi_g of f(phi_g, Phi_r)   -- how many samples look real,
    recall    = mean over phi_r of f(phi_r, Phi_g)   -- how much of the data the samples cover.

The paper uses k = 3 and 50,000 images a side in VGG-16 features; kgen uses its domain
classifier's features (``kgen.metrics.classifier_outputs``), so values are comparable between
runs judged by the same classifier with the same k and set sizes, not with the paper's. Both
numbers grow with k and with the set sizes; use equal sizes.

numpy only; pairwise distances in float64 blocks of at most ``block`` entries
(||a||^2 + ||b||^2 - 2 a.b), never the whole matrix.
"""

from __future__ import annotations

import numpy as np

BLOCK = 2**23  # distances per block: 64 MiB of float64


def _rows(features) -> np.ndarray:
    features = np.asarray(features, np.float64)
    return features.reshape(len(features), -1)


def squared_distances(a: np.ndarray, b: np.ndarray, b_norms: np.ndarray | None = None) -> np.ndarray:
    """||a_i - b_j||^2 for every pair of rows, clipped at 0 (round-off)."""
    b_norms = np.einsum("ij,ij->i", b, b) if b_norms is None else b_norms
    d = np.einsum("ij,ij->i", a, a)[:, None] + b_norms[None, :] - 2.0 * (a @ b.T)
    return np.maximum(d, 0.0)


def knn_radii(features: np.ndarray, k: int = 3, block: int = BLOCK) -> np.ndarray:
    """NND_k: the distance from each row to its k-th nearest other row."""
    x = _rows(features)
    if not 1 <= k < len(x):
        raise ValueError(f"k must be in 1..{len(x) - 1} for {len(x)} points, got {k}")
    norms = np.einsum("ij,ij->i", x, x)
    step = max(1, block // len(x))
    radii = np.empty(len(x))
    for start in range(0, len(x), step):
        d = squared_distances(x[start : start + step], x, norms)
        # The row's distance to itself (0) is the smallest, so the (k+1)-th smallest of all is the
        # k-th nearest other point, duplicates included.
        radii[start : start + step] = np.sqrt(np.partition(d, k, axis=1)[:, k])
    return radii


def inside_manifold(queries: np.ndarray, points: np.ndarray, radii: np.ndarray, block: int = BLOCK) -> np.ndarray:
    """f(q, points) of eq. 1 for each query row: inside at least one ball (points[j], radii[j])."""
    q, p = _rows(queries), _rows(points)
    norms = np.einsum("ij,ij->i", p, p)
    # Round-off guard: ||a||^2 + ||b||^2 - 2 a.b of two equal vectors is ~1e-16 of their norms, not 0.
    radii2 = np.square(radii) + 1e-12 * (norms + norms.mean())
    step = max(1, block // len(p))
    out = np.empty(len(q), bool)
    for start in range(0, len(q), step):
        out[start : start + step] = np.any(squared_distances(q[start : start + step], p, norms) <= radii2, axis=1)
    return out


def precision_recall(real_features: np.ndarray, fake_features: np.ndarray, k: int = 3,
                     block: int = BLOCK) -> dict[str, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019, eq. 1-3) with k-NN hyperspheres.

    Returns ``precision`` (fraction of generated points inside the real manifold), ``recall``
    (fraction of real points inside the generated manifold) and ``precision_recall_k``.
    """
    real, fake = _rows(real_features), _rows(fake_features)
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f"feature sizes differ: {real.shape[1]} (real) and {fake.shape[1]} (generated)")
    precision = inside_manifold(fake, real, knn_radii(real, k, block), block).mean()
    recall = inside_manifold(real, fake, knn_radii(fake, k, block), block).mean()
    return {"precision": float(precision), "recall": float(recall), "precision_recall_k": float(k)}


__all__ = ["inside_manifold", "knn_radii", "precision_recall", "squared_distances"]
