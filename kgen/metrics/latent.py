"""Judging a code space: was the prior imposed, and do the categories find the classes?

- Two-sample test statistic: the unbiased MMD^2 (Gretton et al. 2012, eq. 3) between codes
  and prior draws with the Gaussian kernel k(x, y) = exp(-||x - y||^2 / (2 s^2)), s the
  median pairwise distance of the pooled samples (the median heuristic, Gretton et al.
  section 8). 0 in expectation when the two distributions are equal.
- Clustering error (Makhzani et al. 2016, section 6): each cluster takes the majority label of
  the training examples assigned to it; the error is the fraction of test examples whose
  cluster's label is not theirs. With as many clusters as classes, the accuracy under the best
  one-to-one matching (the Hungarian algorithm on the confusion matrix, scipy's
  linear_sum_assignment) too.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import cdist, pdist

from kgen.metrics.generative import mmd2_unbiased


def median_bandwidth(x: np.ndarray, y: np.ndarray) -> float:
    """The median pairwise Euclidean distance of the pooled rows."""
    pooled = np.concatenate([x, y]).astype(np.float64)
    return float(np.median(pdist(pooled))) or 1.0


def gaussian_kernel(bandwidth: float):
    """k(x, y) = exp(-||x - y||^2 / (2 bandwidth^2)) for every pair of rows."""
    def kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return np.exp(-cdist(x, y, "sqeuclidean") / (2.0 * bandwidth**2))
    return kernel


def mmd2_gaussian(x: np.ndarray, y: np.ndarray, bandwidth: float | None = None) -> float:
    """Unbiased MMD^2 between the rows of x and y with a Gaussian kernel (median heuristic by default)."""
    x, y = (np.asarray(a, np.float64).reshape(len(a), -1) for a in (x, y))
    return mmd2_unbiased(x, y, gaussian_kernel(bandwidth or median_bandwidth(x, y)))


def majority_labels(clusters: np.ndarray, labels: np.ndarray, num_clusters: int) -> np.ndarray:
    """The most frequent label of each cluster's members (-1 for an empty cluster)."""
    out = np.full(num_clusters, -1, dtype=np.int64)
    for k in range(num_clusters):
        members = labels[clusters == k]
        if members.size:
            out[k] = np.bincount(members).argmax()
    return out


def clustering_error(train_clusters: np.ndarray, train_labels: np.ndarray, test_clusters: np.ndarray,
                     test_labels: np.ndarray, num_clusters: int) -> float:
    """Test error when each cluster predicts the majority label of its training members."""
    predicted = majority_labels(np.asarray(train_clusters), np.asarray(train_labels), num_clusters)[test_clusters]
    return float(np.mean(predicted != test_labels))


def hungarian_accuracy(clusters: np.ndarray, labels: np.ndarray, num_classes: int) -> float:
    """Accuracy under the one-to-one cluster -> class matching that maximises it (clusters == classes)."""
    counts = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(counts, (np.asarray(clusters), np.asarray(labels)), 1)
    rows, cols = linear_sum_assignment(counts, maximize=True)
    return float(counts[rows, cols].sum() / len(labels))


__all__ = ["clustering_error", "gaussian_kernel", "hungarian_accuracy", "majority_labels", "median_bandwidth",
           "mmd2_gaussian"]
