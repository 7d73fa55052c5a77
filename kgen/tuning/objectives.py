"""Objectives of a search: the metrics a model logs, and computed ones (FID, ...) added to the logs
by callbacks, so they reach TensorBoard, KerasTuner's best-epoch checkpoint and the dict
``HyperModel.fit`` returns."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import keras
import numpy as np

from kgen.train import sample_quality_callback

# Logged metrics whose names contain one of these are maximised; every other one is minimised.
MAXIMIZED = ("accuracy", "score", "likelihood", "psnr")
# The objective of a search when --objective is not given (else val_loss, or fid without a loss).
DEFAULT_OBJECTIVES = {
    "vae": "val_negative_elbo",  # comparable across beta: the bound at beta = 1
    "sparse_ae": "val_reconstruction_loss",  # loss adds lambda * penalty: not comparable across lambda
    "contractive_ae": "val_reconstruction_loss",
    "rbm": "val_pseudo_log_likelihood",  # the CD loss is a free-energy gap, not a fit measure
    "classifier": "val_accuracy",
}


@dataclass(frozen=True)
class SearchData:
    """What a computed objective's callback may need: the data, the classifier judging samples."""

    data: Any
    data_range: str
    seed: int
    samples: int
    classifier_run: Any = None  # a Run, for the sample-quality objectives


class SumOfLogs(keras.callbacks.Callback):
    """Adds ``name`` = the sum of logged metrics ``parts`` to each epoch's logs."""

    def __init__(self, name: str, parts: tuple[str, ...]):
        super().__init__()
        self.name, self.parts = name, parts

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None and all(p in logs for p in self.parts):
            logs[self.name] = float(sum(float(logs[p]) for p in self.parts))


class HeldOutErrorRate(keras.callbacks.Callback):
    """Adds ``name`` (``error_rate``): the fraction of held-out images whose most probable class
    (``model.predict_proba``) is not their label."""

    def __init__(self, x: np.ndarray, labels: np.ndarray, name: str = "error_rate"):
        super().__init__()
        self.x, self.labels, self.name = x, labels, name

    def on_epoch_end(self, epoch, logs=None):
        from kgen.evaluate import batched

        if logs is not None:
            predicted = batched(self.model.predict_proba, self.x).argmax(axis=1)
            logs[self.name] = float(np.mean(predicted != self.labels))


def held_out(search: "SearchData") -> tuple[np.ndarray, np.ndarray]:
    """Up to ``search.samples`` test images (scaled for the model) and their labels."""
    from kgen.evaluate import dataset_arrays

    return dataset_arrays(search.data, "test", search.data_range, search.samples)


def _sample_quality(model, search: SearchData) -> keras.callbacks.Callback:
    return sample_quality_callback(search.classifier_run, model, search.data, every=1, seed=search.seed,
                                   n=search.samples)


def _error_rate(model, search: SearchData) -> keras.callbacks.Callback:
    return HeldOutErrorRate(*held_out(search))


@dataclass(frozen=True)
class ComputedObjective:
    """An objective no Keras metric logs. ``available(model)`` says whether a (built) model has
    it; ``callback(model, search)`` makes the callback that adds it to every epoch's logs."""

    direction: str
    needs: str  # what a model must be or do, for the error when it is not available
    available: Callable[[Any], bool]
    callback: Callable[[Any, SearchData], keras.callbacks.Callback]
    needs_test_split: bool = False
    needs_classifier: bool = False


def _can_sample(model) -> bool:
    return hasattr(model, "sample")


COMPUTED_OBJECTIVES: dict[str, ComputedObjective] = {
    # Sample quality in a domain classifier's feature space (kgen.metrics), every epoch.
    "fid": ComputedObjective("min", "a model that samples", _can_sample, _sample_quality, needs_classifier=True),
    "kid": ComputedObjective("min", "a model that samples", _can_sample, _sample_quality, needs_classifier=True),
    "classifier_score": ComputedObjective("max", "a model that samples", _can_sample, _sample_quality,
                                          needs_classifier=True),
    # The negative ELBO at beta = 1: reconstruction NLL + KL, whatever beta the trial trains with.
    "val_negative_elbo": ComputedObjective(
        "min", "a VAE (it logs reconstruction_loss and kl_loss)",
        lambda m: {"reconstruction_loss", "kl_loss"} <= set(m.metric_names),
        lambda m, s: SumOfLogs("val_negative_elbo", ("val_reconstruction_loss", "val_kl_loss")),
        needs_test_split=True),
    # Held-out classification error of any model with predict_proba (the classifier).
    "error_rate": ComputedObjective("min", "a model that classifies (predict_proba)",
                                    lambda m: hasattr(m, "predict_proba"), _error_rate, needs_test_split=True),
    # The AAE's semi-supervised error is this measure under its own name, available in that mode only:
    #   "semi_supervised_error": ComputedObjective(
    #       "min", "an aae trained with --mode semi-supervised", lambda m: m.hparams.get("mode") == ...,
    #       lambda m, s: HeldOutErrorRate(*held_out(s), name="semi_supervised_error"), needs_test_split=True),
    # with predict_proba on the AAE, and "aae" entries in DEFAULT_OBJECTIVES and spaces.SPACES.
}


def logged_objectives(model, has_test_split: bool) -> list[str]:
    """The metrics a model logs in fit(): validation ones (val_*, without gradient norms) first."""
    names = list(model.metric_names)
    validation = [f"val_{n}" for n in names if not n.endswith("_grad_norm")] if has_test_split else []
    return validation + names


def available_objectives(model, has_test_split: bool) -> list[str]:
    """What can judge ``model``: the metrics it logs and the computed objectives it has. ``model`` may
    be the class (before any data is loaded): a computed objective that cannot tell from the class
    counts as available then."""
    def available(objective: ComputedObjective) -> bool:
        try:
            return bool(objective.available(model))
        except AttributeError:  # asked about an instance attribute of a class
            return isinstance(model, type)

    computed = [name for name, c in COMPUTED_OBJECTIVES.items()
                if available(c) and (has_test_split or not c.needs_test_split)]
    return logged_objectives(model, has_test_split) + computed


def default_objective(model_name: str, model) -> str:
    if model_name in DEFAULT_OBJECTIVES:
        return DEFAULT_OBJECTIVES[model_name]
    return "val_loss" if "loss" in model.metric_names else "fid"


def objective_direction(name: str) -> str:
    if name in COMPUTED_OBJECTIVES:
        return COMPUTED_OBJECTIVES[name].direction
    return "max" if any(word in name for word in MAXIMIZED) else "min"


def check_objective(name: str, model, has_test_split: bool) -> None:
    """Raise ValueError (listing what the model offers) when ``model`` (a built model, or its class
    before the data is loaded) cannot be judged by ``name``."""
    available = available_objectives(model, has_test_split)
    if name in available:
        return
    computed = COMPUTED_OBJECTIVES.get(name)
    if computed is not None and name not in available_objectives(model, True):
        reason = f"'{name}' needs {computed.needs}"
    elif computed is not None or name in logged_objectives(model, True):
        reason = f"'{name}' needs a test split, which this dataset lacks"
    else:
        reason = f"unknown objective '{name}'"
    raise ValueError(f"{reason}; model '{model.model_name}' offers: {', '.join(available)}")


