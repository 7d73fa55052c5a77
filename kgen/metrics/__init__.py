"""Metrics that judge models: sample quality in a domain classifier's feature space (FID, KID,
classifier score, mode coverage, precision/recall, the real-vs-real floor), likelihoods (the VAE's
ELBO and importance-weighted bound, an RBM's by annealed importance sampling, Parzen windows on
samples), code spaces (MMD to a prior, clustering error, InfoGAN's categorical code); the
reconstruction metrics live in ``kgen.evaluate``. docs/metrics.md has each formula and citation."""

from kgen.metrics.ais import ais_log_partition, linear_schedule, paper_schedule, rbm_likelihood, rbm_log_likelihood
from kgen.metrics.codes import generated_code_accuracy, matched_accuracy, q_code_accuracy
from kgen.metrics.floor import matched_real_floor
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
from kgen.metrics.likelihood import binarize, dequantize, importance_sampling, vae_likelihood
from kgen.metrics.parzen import parzen_evaluate, parzen_log_likelihood
from kgen.metrics.precision_recall import precision_recall
from kgen.metrics.report import (
    classifier_outputs,
    feature_quality,
    generated_outputs,
    real_floor,
    rescale,
    sample_quality,
)

__all__ = ["ais_log_partition", "binarize", "classifier_outputs", "classifier_score", "clustering_error", "dequantize",
           "feature_quality", "fid", "frechet_distance", "gaussian_statistics", "generated_code_accuracy",
           "generated_outputs", "hungarian_accuracy",
           "importance_sampling", "kid", "linear_schedule", "matched_accuracy", "matched_real_floor", "mmd2_gaussian",
           "mmd2_unbiased", "mode_coverage", "paper_schedule", "parzen_evaluate", "parzen_log_likelihood",
           "precision_recall", "q_code_accuracy", "rbm_likelihood", "rbm_log_likelihood", "real_floor", "rescale",
           "sample_quality", "vae_likelihood"]
