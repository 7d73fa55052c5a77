"""Model registry: ``kgen train NAME`` looks names up here."""

from __future__ import annotations

from kgen.models.aae import AAE
from kgen.models.ae import AE
from kgen.models.base import Option, Phase, PhasedModel
from kgen.models.cgan import CGAN
from kgen.models.classifier import Classifier
from kgen.models.contractive_ae import ContractiveAE
from kgen.models.denoising_ae import DenoisingAE
from kgen.models.gan import DCGAN, GAN
from kgen.models.infogan import InfoGAN
from kgen.models.linear_ae import LinearAE
from kgen.models.rbm import RBM
from kgen.models.sparse_ae import SparseAE
from kgen.models.stacked_ae import StackedAE
from kgen.models.vae import VAE
from kgen.models.wgan import WGAN, WGANGP

MODELS: dict[str, type[PhasedModel]] = {
    cls.model_name: cls for cls in (AE, VAE, StackedAE, SparseAE, DenoisingAE, ContractiveAE, LinearAE, RBM,
                                    GAN, DCGAN, CGAN, InfoGAN, WGAN, WGANGP, AAE, Classifier)
}

__all__ = ["AAE", "AE", "CGAN", "DCGAN", "GAN", "MODELS", "WGAN", "WGANGP", "Classifier", "ContractiveAE", "DenoisingAE",
           "InfoGAN", "LinearAE", "Option", "Phase", "PhasedModel", "RBM", "SparseAE", "StackedAE", "VAE",
           "get_model_class"]


def get_model_class(name: str) -> type[PhasedModel]:
    try:
        return MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model '{name}'; choose one of: {', '.join(MODELS)}") from None
