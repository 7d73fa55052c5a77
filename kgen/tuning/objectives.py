"""Objectives of a search: the metrics a model logs, and computed ones (FID, ...) added to the logs
by callbacks, so they reach TensorBoard, KerasTuner's best-epoch checkpoint and the dict
``HyperModel.fit`` returns."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import keras
import numpy as np

from kgen.data import dataset_arrays
from kgen.models import Ability, can
from kgen.outputs import batched
from kgen.train import sample_quality_callback

# Logged metrics whose names contain one of these are maximised; every other one is minimised.
MAXIMIZED = ("accuracy", "score", "likelihood", "psnr")


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
        if logs is not None:
            predicted = batched(self.model.predict_proba, self.x).argmax(axis=1)
            logs[self.name] = float(np.mean(predicted != self.labels))


def held_out(search: "SearchData") -> tuple[np.ndarray, np.ndarray]:
    """Up to ``search.samples`` test images (scaled for the model) and their labels."""
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
    return can(model, Ability.SAMPLE)


def _predicts_classes(model) -> bool:
    return can(model, Ability.CLASSIFY)


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
    # Held-out classification error of any model that predicts classes (the classifier, the
    # semi-supervised AAE), and the same under the name of the AAE paper's figure.
    "error_rate": ComputedObjective("min", "a model that predicts classes (predict_proba)", _predicts_classes,
                                    _error_rate, needs_test_split=True),
    "semi_supervised_error": ComputedObjective(
        "min", "a model that predicts classes (aae --mode semi-supervised)", _predicts_classes,
        lambda m, s: HeldOutErrorRate(*held_out(s), name="semi_supervised_error"), needs_test_split=True),
}


def logged_objectives(model, has_test_split: bool) -> list[str]:
    """The metrics a model logs in fit(): validation ones (val_*, without gradient norms) first."""
    names = list(model.metric_names)
    validation = [f"val_{n}" for n in names if not n.endswith("_grad_norm")] if has_test_split else []
    return validation + names


def available_objectives(model, has_test_split: bool) -> list[str]:
    """What can judge a built ``model``: the metrics it logs and the computed objectives it has."""
    computed = [name for name, c in COMPUTED_OBJECTIVES.items()
                if c.available(model) and (has_test_split or not c.needs_test_split)]
    return logged_objectives(model, has_test_split) + computed


def default_objective(model) -> str:
    """The objective of a search without --objective: what the (built) model declares."""
    return model.default_objective()


def objective_direction(name: str) -> str:
    if name in COMPUTED_OBJECTIVES:
        return COMPUTED_OBJECTIVES[name].direction
    return "max" if any(word in name for word in MAXIMIZED) else "min"


def check_objective(name: str, model, has_test_split: bool) -> None:
    """Raise ValueError (listing what the model offers) when a built ``model`` cannot be judged by ``name``."""
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


def check_objective_name(name: str, cls) -> None:
    """Before any data is loaded: raise ValueError for a name that is no computed objective and no
    metric the model class logs (classes whose metrics depend on their options are left to
    ``check_objective`` on the built model)."""
    logged = getattr(cls, "metric_names", None)  # a property when they depend on the options
    if name in COMPUTED_OBJECTIVES or not isinstance(logged, (tuple, list)):
        return
    if name not in logged_objectives(cls, True):
        def maybe(c: ComputedObjective) -> bool:  # on the class, as far as it can tell
            try:
                return bool(c.available(cls))
            except AttributeError:
                return False

        offered = logged_objectives(cls, True) + [n for n, c in COMPUTED_OBJECTIVES.items() if maybe(c)]
        raise ValueError(f"unknown objective '{name}'; model '{cls.model_name}' offers: {', '.join(offered)}")
