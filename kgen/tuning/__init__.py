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
"""

from kgen.tuning.objectives import COMPUTED_OBJECTIVES, ComputedObjective, SearchData
from kgen.tuning.search import (TUNERS, KgenHyperModel, SearchFailed, TuneResult, TuneSettings, format_table,
                                make_settings, tune)
from kgen.tuning.spaces import (ByArch, Choice, Fixed, Range, SpaceError, declare, default_space,
                                read_space_file, search_space, searchable_options, spec_to_json)

__all__ = ["COMPUTED_OBJECTIVES", "TUNERS", "ByArch", "Choice", "ComputedObjective",
           "Fixed", "KgenHyperModel", "Range", "SearchData", "SearchFailed", "SpaceError", "TuneResult", "TuneSettings",
           "declare", "default_space", "format_table", "make_settings", "read_space_file", "search_space",
           "searchable_options", "spec_to_json", "tune"]
