"""`kgen tune` as a library: a KerasTuner search over a model's options.

    tuning/<model>-<dataset>/       (--tuner-dir)
        tune.json                   the search's settings and its resolved space (--resume reads them)
        search/                     KerasTuner's state: oracle.json, trial_<id>/ (trial.json, checkpoint)
        logs/<trial>/execution0/    TensorBoard per trial: train/, validation/ scalars, the hparams
                                    record, images/ grids (best trials)
        results.csv                 trial, status, epochs, hyperparameters, objective (after every trial)
        best_config.json            the winner as a config for `kgen train --config`
        best/<rank>-trial_<id>/     sample grids of the best trials as PNG

A search space maps option names (a model's options, plus ``learning_rate``) to a ``Range``
(numbers, linear or log), a ``Choice`` (listed values) or a ``Fixed`` value (``kgen.space``). Each
model declares its default space (``search_space``) and objective (``tuning_objective``) in its own
file; ``--space FILE`` (YAML or JSON, same shapes) overrides entries.

The objective is a metric the model logs (``val_loss``, ``val_reconstruction_loss``, ...) or one
of ``COMPUTED_OBJECTIVES``, which a callback computes after every epoch and adds to the epoch's
logs, so it reaches TensorBoard, KerasTuner's best-epoch checkpoint and the dict ``fit`` returns.

Importing ``kgen.tuning`` imports neither Keras nor KerasTuner: each name below loads its module when
first used, so that `kgen tune` checks its command line (``kgen.tuning.settings``) without a backend.
A search over several processes is ``kgen.tuning.distributed`` (KerasTuner's chief/worker mode).
"""

from __future__ import annotations

import importlib
from typing import Any

# Where each public name lives.
_HOMES = {
    "kgen.tuning.objectives": ("COMPUTED_OBJECTIVES", "ComputedObjective", "SearchData"),
    "kgen.tuning.search": ("KgenHyperModel", "SearchFailed", "TuneResult", "format_table", "make_settings", "tune"),
    "kgen.tuning.settings": ("TUNERS", "DistributedSearch", "TuneSettings", "check_settings", "distributed_search"),
    "kgen.tuning.spaces": ("ByArch", "Choice", "Fixed", "Range", "SpaceError", "declare", "default_space",
                           "read_space_file", "search_space", "searchable_options"),
    "kgen.space": ("spec_to_json",),
}
_HOME_OF = {name: module for module, names in _HOMES.items() for name in names}


def __getattr__(name: str) -> Any:
    if name in _HOME_OF:
        return getattr(importlib.import_module(_HOME_OF[name]), name)
    try:  # a submodule: kgen.tuning.objectives, ...
        return importlib.import_module(f"{__name__}.{name}")
    except ModuleNotFoundError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None


def __dir__() -> list[str]:
    return sorted({*globals(), *_HOME_OF})
