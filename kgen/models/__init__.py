"""Model registry: ``kgen train NAME`` looks names up here."""

from __future__ import annotations

from kgen.models.ae import AE
from kgen.models.base import Option, Phase, PhasedModel
from kgen.models.vae import VAE

MODELS: dict[str, type[PhasedModel]] = {cls.model_name: cls for cls in (AE, VAE)}

__all__ = ["AE", "MODELS", "Option", "Phase", "PhasedModel", "VAE", "get_model_class"]


def get_model_class(name: str) -> type[PhasedModel]:
    try:
        return MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model '{name}'; choose one of: {', '.join(MODELS)}") from None
