"""Metrics that judge models: sample quality in a domain classifier's feature space (FID, KID,
classifier score, mode coverage), code spaces (MMD to a prior, clustering error); the
reconstruction metrics live in ``kgen.evaluate``."""

from kgen.metrics.generative import (
    classifier_score,
    fid,
    frechet_distance,
    gaussian_statistics,
    kid,
    mmd2_unbiased,
    mode_coverage,
)
from kgen.metrics.latent import clustering_error, hungarian_accuracy, mmd2_gaussian
from kgen.metrics.report import classifier_outputs, real_floor, rescale, sample_quality

__all__ = ["classifier_outputs", "classifier_score", "clustering_error", "fid", "frechet_distance",
           "gaussian_statistics", "hungarian_accuracy", "kid", "mmd2_gaussian", "mmd2_unbiased", "mode_coverage",
           "real_floor", "rescale", "sample_quality"]
