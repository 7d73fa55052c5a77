"""Metrics that judge models: sample quality in a domain classifier's feature space (FID, KID,
classifier score, mode coverage); the reconstruction metrics live in ``kgen.evaluate``."""

from kgen.metrics.generative import (
    classifier_score,
    fid,
    frechet_distance,
    gaussian_statistics,
    kid,
    mmd2_unbiased,
    mode_coverage,
)
from kgen.metrics.report import classifier_outputs, real_floor, rescale, sample_quality

__all__ = ["classifier_outputs", "classifier_score", "fid", "frechet_distance", "gaussian_statistics", "kid", "mmd2_unbiased",
           "mode_coverage", "real_floor", "rescale", "sample_quality"]
