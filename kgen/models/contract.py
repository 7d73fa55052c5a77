"""The model contract: what a model can do, declared by its class and checked when it registers.

Every command asks the contract (``can(model, Ability.SAMPLE)``), never the methods
(``hasattr(model, "sample")``): a model file declares its abilities once, ``@register`` checks that
the class has the methods each ability promises, and a model whose abilities depend on its options
(the AAE's modes) narrows them per instance in ``active_abilities``.

    ability              methods the class must have          what it promises
    reconstruct          reconstruct(x[, condition])          x -> x_hat in the data range
    encode               encode(x)                            codes, or a tuple named by encode_output_names
    decode               decode(codes[, condition])           codes -> images
    generate             sample_latent(n, seed), generate(z, condition)   a latent space to walk
    sample               sample(n, seed, labels)              draws from the model
    conditional          condition_of_labels(n, labels)       draws for given labels (num_classes of them)
    labelled_generator   (generate's condition)               the generator takes the label (style grids)
    labelled_reconstruction  (reconstruct's condition)        reconstruct needs the label (supervised AAE)
    classify             predict_proba(x)                     class probabilities (error rate, accuracy)
    cluster              predict_proba(x)                     cluster probabilities (clustering error)
    denoise              corrupt(x, seed)                     the corruption the model undoes
    code_prior           sample_prior(n, labels, seed)        a prior the codes are pushed to (MMD, plots)
    traverse             traversal_grids(seed)                code traversals (InfoGAN)
    features             features(x)                          a feature space that judges generators
    pseudo_likelihood    pseudo_log_likelihood(v)             the RBM's pseudo-log-likelihood
    principal_subspace   decoder_basis()                      the subspace a linear AE spans (PCA angles)
    variational          encode(x) -> (mean, log_var),        a Gaussian q(z|x) and log p(x|z) over a N(0, I)
                         reconstruction_nll(x, logits)        prior: the ELBO and the IWAE bound (VAEs)
    energy               free_energy(v)                       an unnormalised log p(v) = -F(v): log Z by AIS (RBMs)
    categorical_code     code_logits(x)                       a categorical code read back from images (InfoGAN's Q)

A model also declares, in its own file: its options and rules (``kgen.catalog``), its default search
space (``search_space``, ``kgen.space`` shapes) and tuning objective (``tuning_objective``), and the
dataset facts it needs (an option with ``from_data``, e.g. the number of classes).
"""

from __future__ import annotations

import enum
import importlib
import pkgutil
from typing import Any

import keras


class Ability(str, enum.Enum):
    RECONSTRUCT = "reconstruct"
    ENCODE = "encode"
    DECODE = "decode"
    GENERATE = "generate"
    SAMPLE = "sample"
    CONDITIONAL = "conditional"
    LABELLED_GENERATOR = "labelled_generator"
    LABELLED_RECONSTRUCTION = "labelled_reconstruction"
    CLASSIFY = "classify"
    CLUSTER = "cluster"
    DENOISE = "denoise"
    CODE_PRIOR = "code_prior"
    TRAVERSE = "traverse"
    FEATURES = "features"
    PSEUDO_LIKELIHOOD = "pseudo_likelihood"
    PRINCIPAL_SUBSPACE = "principal_subspace"
    VARIATIONAL = "variational"
    ENERGY = "energy"
    CATEGORICAL_CODE = "categorical_code"


METHODS: dict[Ability, tuple[str, ...]] = {
    Ability.RECONSTRUCT: ("reconstruct",),
    Ability.ENCODE: ("encode",),
    Ability.DECODE: ("decode",),
    Ability.GENERATE: ("sample_latent", "generate"),
    Ability.SAMPLE: ("sample",),
    Ability.CONDITIONAL: ("condition_of_labels",),
    Ability.LABELLED_GENERATOR: ("condition_of_labels", "generate"),
    Ability.LABELLED_RECONSTRUCTION: ("condition_of_labels", "reconstruct"),
    Ability.CLASSIFY: ("predict_proba",),
    Ability.CLUSTER: ("predict_proba",),
    Ability.DENOISE: ("corrupt",),
    Ability.CODE_PRIOR: ("sample_prior",),
    Ability.TRAVERSE: ("traversal_grids",),
    Ability.FEATURES: ("features",),
    Ability.PSEUDO_LIKELIHOOD: ("pseudo_log_likelihood",),
    Ability.PRINCIPAL_SUBSPACE: ("decoder_basis",),
    Ability.VARIATIONAL: ("encode", "reconstruction_nll"),
    Ability.ENERGY: ("free_energy",),
    Ability.CATEGORICAL_CODE: ("code_logits",),
}

# Family order of `kgen list` and the docs; within a family, registration order.
FAMILIES = ("autoencoder", "rbm", "gan", "aae", "classifier")
REGISTRY: dict[str, type] = {}


def abilities(model: Any) -> frozenset[Ability]:
    """What a model (an instance: per its options) or a model class (all it may do) can do."""
    if isinstance(model, type):
        return frozenset(model.abilities)
    return frozenset(model.active_abilities())


def can(model: Any, *wanted: Ability) -> bool:
    """Whether ``model`` (instance or class) has every ability in ``wanted``."""
    return set(wanted) <= abilities(model)


class ContractError(TypeError):
    """A model class that does not keep its contract: a programming error, found at import."""


def register(cls: type) -> type:
    """Class decorator of every model: checks the contract and registers the class under its
    ``model_name`` (for `kgen train NAME`) and with Keras (so a saved model reloads)."""
    name = getattr(cls, "model_name", "")
    if not name:
        raise ContractError(f"{cls.__name__} has no model_name")
    if name in REGISTRY and REGISTRY[name] is not cls:
        raise ContractError(f"model name '{name}' is taken by {REGISTRY[name].__name__}")
    if cls.family not in FAMILIES:
        raise ContractError(f"{cls.__name__}.family must be one of {', '.join(FAMILIES)}, got {cls.family!r}")
    missing = [f"{ability.value} needs {method}()" for ability in cls.abilities for method in METHODS[ability]
               if not callable(getattr(cls, method, None))]
    if missing:
        raise ContractError(f"{cls.__name__} declares abilities it lacks: {'; '.join(missing)}")
    options = {o.name for o in cls.options}
    unknown = set(cls.search_space) - options - {"learning_rate"}
    if unknown:
        raise ContractError(f"{cls.__name__}.search_space names options it does not have: {', '.join(sorted(unknown))}")
    cls = keras.saving.register_keras_serializable(package="kgen")(cls)
    REGISTRY[name] = cls
    return cls


def discover() -> dict[str, type]:
    """Import every module of kgen.models (each registers its classes) and return the registry in
    family order: a new model is one file, with no edit elsewhere."""
    package = importlib.import_module("kgen.models")
    for module in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"kgen.models.{module.name}")
    order = {name: i for i, name in enumerate(REGISTRY)}
    return dict(sorted(REGISTRY.items(), key=lambda item: (FAMILIES.index(item[1].family), order[item[0]])))
