"""The models: every module here declares one family and registers its classes (``@register``);
importing the package finds them all, so a new model is one file (``kgen.models.contract``).

``MODELS`` maps names (`kgen train NAME`) to classes in family order; ``kgen.models.VAE`` and the
like resolve any registered class by its class name.
"""

from __future__ import annotations

from kgen.models.base import Option, Phase, PhasedModel, Rule
from kgen.models.contract import Ability, abilities, can, discover, register

MODELS: dict[str, type[PhasedModel]] = discover()


def get_model_class(name: str) -> type[PhasedModel]:
    try:
        return MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model '{name}'; choose one of: {', '.join(MODELS)}") from None


def __getattr__(name: str) -> type[PhasedModel]:
    """``kgen.models.AE``: a registered model class by its class name."""
    for cls in MODELS.values():
        if cls.__name__ == name:
            return cls
    raise AttributeError(f"module 'kgen.models' has no attribute {name!r}")


__all__ = ["MODELS", "Ability", "Option", "Phase", "PhasedModel", "Rule", "abilities", "can", "get_model_class",
           "register"]
