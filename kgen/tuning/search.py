"""The search: the HyperModel, KerasTuner's tuners with kgen's logging, results (the settings, tune.json,
are ``kgen.tuning.settings``; a search over several processes, ``kgen.tuning.distributed``)."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import re
import shutil
import sys
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import grpc
import keras
import keras_tuner
from keras_tuner.src import config as kt_config

from kgen import callbacks as kgen_callbacks
from kgen.models import get_model_class
from kgen.files import atomic_write, write_json
from kgen.runs import RunError, classifier_for
from kgen.backend.distribution import Distribution
from kgen.backend.precision import resolve as resolve_precision
from kgen.train import (TrainConfig, build_model, fit_callbacks, grid_arrays, load_data, pipelines,
                        setup_distribution, steps_in_epoch)
from kgen.tuning import distributed as kgen_distributed
from kgen.tuning.objectives import (COMPUTED_OBJECTIVES, SearchData, check_objective, check_objective_name,
                                    default_objective, objective_direction)
from kgen.tuning.settings import DistributedSearch, TuneSettings, check_settings, settings_file
from kgen.space import spec_to_json
from kgen.tuning.spaces import Spec, declare, parse_spec, read_space_file, search_space, searchable_options

HYPERBAND_FACTOR = 3  # keep 1/3 of each Hyperband round for the next, 3x longer one (Li et al. 2018)
BEST_GRIDS = 3  # default number of best trials whose sample grids are drawn after the search


def space_specs(settings: TuneSettings) -> dict[str, Spec]:
    """The search's space (tune.json's file form) as specs."""
    options = searchable_options(settings.train.model)
    return {name: parse_spec(name, raw, options[name], "tune.json") for name, raw in settings.space.items()}


def make_settings(model: str | None, given: dict[str, Any], model_options: dict[str, Any],
                  space_file: str | Path | None = None, tuner_dir: str | Path | None = None,
                  resume: bool = False, joining: bool = False) -> tuple[TuneSettings, Path]:
    """The settings of a new search with its space resolved, or of the one saved in ``tuner_dir``
    when ``resume`` (``kgen.tuning.settings.check_settings`` says what is checked, and ``joining``);
    a ``--space`` file given again must resolve to the saved space."""
    settings, tuner_dir = check_settings(model, given, model_options, tuner_dir, resume, joining)
    if resume and space_file is None:
        return settings, tuner_dir
    source = f"--space {space_file}" if space_file is not None else "--space"
    overrides = read_space_file(space_file) if space_file is not None else None
    space = {k: spec_to_json(v) for k, v in
             search_space(settings.train.model, fixed_options(settings.train), overrides, source).items()}
    if not resume:
        settings.space = space
    elif space != settings.space:
        raise ValueError(f"--resume continues the search in {tuner_dir} as it was set up; these differ: "
                         f"--space {space_file} (the search has the space saved in {settings_file(tuner_dir)})")
    return settings, tuner_dir


def fixed_options(config: TrainConfig) -> dict[str, Any]:
    """Options the command line fixed: model options, and the learning rate when given."""
    rate = {} if config.learning_rate is None else {"learning_rate": config.learning_rate}
    return {**config.model_options, **rate}


# -- the HyperModel and the tuners ---------------------------------------------------------------
def trial_config(base: TrainConfig, values: dict[str, Any]) -> TrainConfig:
    """The training config of a trial: the search's, with the trial's values of the space
    (KerasTuner's own ``tuner/...`` entries left out)."""
    values = {k: v for k, v in values.items() if not k.startswith("tuner/")}
    options = {**base.model_options, **{k: v for k, v in values.items() if k != "learning_rate"}}
    return replace(base, model_options=options, learning_rate=values.get("learning_rate", base.learning_rate))


class KgenHyperModel(keras_tuner.HyperModel):
    """Builds, compiles and trains a kgen model with one trial's values of ``space``.

    One class serves every family: a family differs in its space (``search_space``) and its objective
    (``COMPUTED_OBJECTIVES`` callbacks), both data here.
    """

    def __init__(self, settings: TuneSettings, data, data_range: str, distribution: Distribution | None = None):
        super().__init__(name=settings.train.model)
        self.settings, self.data, self.data_range = settings, data, data_range
        self.distribution = distribution or Distribution()  # every trial trains on these devices
        self.space = space_specs(settings)
        self.options = searchable_options(settings.train.model)
        self.objective_callbacks: list[keras.callbacks.Callback] = []  # shared by every trial (no state)

    def values(self, hp: keras_tuner.HyperParameters) -> dict[str, Any]:
        base = self.settings.train
        defaults = {**{o.name: o.default for o in self.options.values()},
                    "learning_rate": get_model_class(base.model).default_learning_rate}
        return {name: declare(hp, name, spec, self.options[name], defaults.get(name))
                for name, spec in self.space.items()}

    def config(self, values: dict[str, Any]) -> TrainConfig:
        config = trial_config(self.settings.train, values)
        config.validate()
        return config

    def build(self, hp: keras_tuner.HyperParameters) -> keras.Model:
        config = self.config(self.values(hp))
        keras.utils.set_random_seed(config.seed)  # a trial starts as `kgen train` with its config would
        with self.distribution.scope():
            return build_model(config, self.data.shape, self.data_range, self.data.num_train, self.data.num_classes,
                               self.distribution)

    def fit(self, hp, model, *args, epochs: int = 1, initial_epoch: int = 0, callbacks=(), verbose="auto",
            **kwargs) -> dict[str, float]:
        """Train for epochs ``initial_epoch``..``epochs`` (Hyperband continues a trial this way) and
        return the last epoch's logs: the score of a trial is the model it ends with, the one
        `kgen train --config best_config.json` reproduces."""
        config = self.config(self.values(hp))
        distribution = self.distribution
        train, test_ds = pipelines(config, self.data, self.data_range, initial_epoch)
        train_ds = distribution.distribute_dataset(train.dataset, config.batch_size, self.data.num_train)
        if test_ds is not None:
            test_ds = distribution.distribute_dataset(test_ds, config.batch_size, self.data.num_test)
        distribution.prepare(model)
        if initial_epoch == 0:
            with distribution.scope():
                model.before_training(train_ds, config.learning_rate, train.steps_per_epoch, verbose,
                                      callbacks=fit_callbacks(train))
        nan_guard = kgen_callbacks.NaNGuard(steps_in_epoch(config, self.data.num_train, distribution))
        history = model.fit(
            train_ds, epochs=epochs, initial_epoch=initial_epoch, steps_per_epoch=train.steps_per_epoch,
            validation_data=test_ds, validation_steps=config.validation_steps,
            # Objective callbacks first: they add their values to the logs the guard and the others read.
            callbacks=[*fit_callbacks(train), *self.objective_callbacks, nan_guard, *callbacks], shuffle=False,
            verbose=verbose,
        )
        if nan_guard.failed_at is not None:
            raise keras_tuner.errors.FailedTrialError(nan_guard.message())
        return {name: float(values[-1]) for name, values in history.history.items()}


def trial_log_dir(log_root: str | Path, trial_id: str, execution: int = 0) -> Path:
    """A trial's TensorBoard folder, as KerasTuner names it on the TensorFlow backend."""
    return Path(log_root) / str(trial_id) / f"execution{execution}"


class TunerMixin:
    """What kgen adds to KerasTuner's tuners: one TensorBoard folder per trial and the hparams
    dashboard's record on every backend (KerasTuner does both on TensorFlow only), a line for a
    failed trial, results.csv rewritten after every trial, and on a distributed search's worker a
    heartbeat to the chief while a trial trains (``kgen.tuning.distributed``)."""

    results_path: Path | None = None  # None: another process (the chief) writes the results
    _heartbeat = None

    def on_search_begin(self):
        super().on_search_begin()
        self.trained: list[str] = []  # the trials this process trained, in order
        self._heartbeat: kgen_distributed.Heartbeat | None = None

    def on_trial_begin(self, trial):
        super().on_trial_begin(trial)
        stub = getattr(self.oracle, "stub", None)  # a worker's oracle is KerasTuner's OracleClient
        if stub is not None:
            self._heartbeat = kgen_distributed.Heartbeat(stub, trial.trial_id).start()

    def _configure_tensorboard_dir(self, callbacks, trial, execution=0):
        boards = [c for c in callbacks if isinstance(c, keras.callbacks.TensorBoard)]
        for callback in boards:  # a trial run again (its search was killed) starts its folder afresh
            shutil.rmtree(trial_log_dir(callback.log_dir, trial.trial_id, execution), ignore_errors=True)
        if keras.backend.backend() == "tensorflow":
            return super()._configure_tensorboard_dir(callbacks, trial, execution)
        from tensorboard.plugins.hparams import api as hparams_api

        for callback in boards:
            callback.log_dir = str(trial_log_dir(callback.log_dir, trial.trial_id, execution))
            # hparams_api.KerasCallback is a Keras 3 callback on every backend; it writes with
            # tf.summary, which needs no TensorFlow model.
            callbacks.append(hparams_api.KerasCallback(callback.log_dir, trial_hparams(trial), trial_id=trial.trial_id))

    def on_trial_end(self, trial):
        if self._heartbeat is not None:
            self._heartbeat.stop()
            self._heartbeat = None
        self.trained.append(trial.trial_id)
        try:
            super().on_trial_end(trial)  # raises after too many failed trials in a row
        finally:
            self.record_trial_end(trial)

    def record_trial_end(self, trial) -> None:
        """A line for a failed trial and results.csv brought up to date (the chief of a distributed
        search calls it for every trial a worker ends)."""
        if trial is not None and trial.status in ("FAILED", "INVALID"):
            print(f"[kgen] trial {trial.trial_id} failed: {failure(trial)} (traceback in "
                  f"{Path(self.get_trial_dir(trial.trial_id)) / 'trial.json'})", file=sys.stderr)
        if self.results_path is not None:
            write_results(self.results_path, results_rows(self))


def failure(trial) -> str:
    """The last line of a failed trial's traceback, without the exception's module path (and
    without the class for kgen's own FailedTrialError)."""
    lines = [line for line in (trial.message or "").strip().splitlines() if line.strip()]
    if not lines:
        return "no result"
    last = re.sub(r"^(?:[\w]+\.)+(\w+): ", r"\1: ", lines[-1].strip())
    return last.removeprefix("FailedTrialError: ")


def trial_hparams(trial) -> dict[str, Any]:
    """The trial's searched values, for the hparams dashboard."""
    hp = trial.hyperparameters
    return {p.name: hp.get(p.name) for p in hp.space if hp.is_active(p)}


class RandomSearch(TunerMixin, keras_tuner.RandomSearch):
    pass


class BayesianOptimization(TunerMixin, keras_tuner.BayesianOptimization):
    pass


class Hyperband(TunerMixin, keras_tuner.Hyperband):
    pass


def make_tuner(settings: TuneSettings, hypermodel: KgenHyperModel, objective: str, direction: str,
               tuner_dir: Path, worker: str | None = None) -> keras_tuner.Tuner:
    """The KerasTuner tuner of a search; it reloads the search's state when tuner_dir has one.
    ``worker``: this process is that worker of a distributed search (KerasTuner's variables set),
    which leaves the results to the chief."""
    common = dict(
        hypermodel=hypermodel, objective=keras_tuner.Objective(objective, direction),
        directory=str(tuner_dir), project_name="search", overwrite=False,
        seed=settings.train.seed + 1,  # KerasTuner takes seed 0 as "no seed"
    )
    # KerasTuner reloads oracle.json, tuner0.json and every trial.json here, announcing it on stdout.
    announced = io.StringIO()
    try:
        with contextlib.redirect_stdout(announced):
            tuner = _new_tuner(settings, common)
    except (ValueError, KeyError, TypeError, AttributeError, IndexError, OSError) as exc:
        state = Path(tuner_dir) / "search"
        broken = [str(path) for path in sorted(state.rglob("*.json")) if unreadable_json(path)]
        where = ", ".join(broken) if broken else f"the search state in {state}"
        raise RunError(f"{where} is corrupt ({type(exc).__name__}: {exc}); the finished trials "
                       f"are listed in {Path(tuner_dir) / 'results.csv'}; start a new search with another "
                       "--tuner-dir") from None
    if "Reloading" in announced.getvalue():
        joins = f"worker {worker} rejoins" if worker else "continuing"
        print(f"[kgen] {joins} the search in {tuner_dir}", file=sys.stderr)
    tuner.results_path = None if worker else Path(tuner_dir) / "results.csv"
    return tuner


def _new_tuner(settings: TuneSettings, common: dict) -> keras_tuner.Tuner:
    if settings.tuner == "hyperband":
        tuner = Hyperband(max_epochs=settings.train.epochs, factor=HYPERBAND_FACTOR, **common)
        # Hyperband sizes itself from max_epochs; --max-trials caps it through the oracle.
        tuner.oracle.max_trials = settings.max_trials
        return tuner
    if settings.tuner == "bayesian":
        return BayesianOptimization(max_trials=settings.max_trials, **common)
    return RandomSearch(max_trials=settings.max_trials, **common)


def unreadable_json(path: Path) -> bool:
    try:
        json.loads(path.read_text())
        return False
    except (OSError, ValueError):
        return True


# -- results -----------------------------------------------------------------------------------
@dataclass
class TuneResult:
    tuner_dir: Path
    objective: str
    direction: str
    rows: list[dict[str, Any]]
    best: dict[str, Any] | None
    results_path: Path
    best_config_path: Path | None
    log_dir: Path
    grids: list[Path]
    worker: str | None = None  # a distributed search's worker: it wrote no results
    trained: list[str] = field(default_factory=list)  # the trials this process trained
    unfinished: list[str] = field(default_factory=list)  # trials started but never ended (lost workers)


def results_rows(tuner) -> list[dict[str, Any]]:
    """One row per trial: trial, status, epochs, its values, the objective (None unless completed)."""
    objective = tuner.oracle.objective.name
    names = [p.name for p in tuner.oracle.hyperparameters.space]
    rows = []
    # In the order the trials started: their ids are zero-padded to --max-trials, which --resume may raise.
    for trial_id in tuner.oracle.start_order:
        trial = tuner.oracle.trials[trial_id]
        values = trial.hyperparameters.values
        row = {"trial": trial_id, "status": trial.status,
               "epochs": values.get("tuner/epochs", tuner.hypermodel.settings.train.epochs)}
        if tuner.hypermodel.settings.tuner == "hyperband":  # the trial whose checkpoint it trains on
            row["continues"] = values.get("tuner/trial_id")
        row.update({name: values.get(name) for name in names})
        row[objective] = float(trial.score) if trial.status == "COMPLETED" and trial.score is not None else None
        rows.append(row)
    return rows


def write_results(path: Path, rows: list[dict[str, Any]]) -> None:
    columns = list(dict.fromkeys(k for row in rows for k in row))

    def write(tmp: Path):
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, columns)
            writer.writeheader()
            writer.writerows({k: format_value(row.get(k), for_csv=True) for k in columns} for row in rows)

    atomic_write(path, write)


def format_value(value: Any, for_csv: bool = False) -> str:
    if value is None:
        return "" if for_csv else "-"
    if isinstance(value, float):
        return repr(value) if for_csv else f"{value:.4g}"
    return str(value)


def format_table(rows: list[dict[str, Any]]) -> str:
    """The results as an aligned text table, in trial order."""
    if not rows:
        return "no trials"
    columns = list(dict.fromkeys(k for row in rows for k in row))
    cells = [[format_value(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)) for r in cells]
    return "\n".join(lines)


def best_config(settings: TuneSettings, trial) -> TrainConfig:
    """The winner as a `kgen train` config: the search's training settings with the trial's values,
    for as many epochs as the trial trained (Hyperband's trials differ)."""
    values = trial.hyperparameters.values
    return replace(trial_config(settings.train, values), epochs=values.get("tuner/epochs", settings.train.epochs))


def draw_best_grids(tuner, settings: TuneSettings, data, data_range: str, tuner_dir: Path, log_root: Path,
                    count: int = BEST_GRIDS) -> list[Path]:
    """Sample grids (and reconstructions, codes, ...) of the best trials' checkpoints, logged as
    `kgen train` logs them: TensorBoard images in the trial's folder and PNGs in best/<rank>-trial_<id>/."""
    best_root = tuner_dir / "best"
    if best_root.exists():
        shutil.rmtree(best_root)  # a resumed search may have new winners
    best_root.mkdir()
    inputs, labels = grid_arrays(data, data_range)
    folders = []
    best = [trial for trial in tuner.oracle.get_best_trials(count) if trial.status == "COMPLETED"]
    elsewhere = [t.trial_id for t in best if not Path(tuner._get_checkpoint_fname(t.trial_id)).is_file()]
    if elsewhere:  # a distributed search whose workers write to their own tuner directories
        print(f"[kgen] no sample grids of trials {', '.join(elsewhere)}: their checkpoints are not in {tuner_dir} "
              "(give the chief and the workers one shared --tuner-dir)", file=sys.stderr)
    for rank, trial in enumerate(best, start=1):
        if trial.trial_id in elsewhere:
            continue
        model = tuner.load_model(trial)
        folder = best_root / f"{rank}-trial_{trial.trial_id}"
        grids = kgen_callbacks.ImageGrids(trial_log_dir(log_root, trial.trial_id) / "images", folder,
                                          inputs=inputs, labels=labels)
        grids.set_model(model)
        epochs = trial.hyperparameters.values.get("tuner/epochs", settings.train.epochs)
        grids.on_epoch_end(epochs - 1)
        folders.append(folder)
    return folders


# -- the search --------------------------------------------------------------------------------
class SearchFailed(RuntimeError):
    """The search stopped because its trials kept failing."""


def tune(settings: TuneSettings, tuner_dir: str | Path, resume: bool = False, verbose: int | str = "auto",
         runs_root: str | Path = "runs", best_grids: int = BEST_GRIDS,
         distributed: DistributedSearch | None = None) -> TuneResult:
    """Run (or, with ``resume``, continue) a search and write its results to ``tuner_dir``; then
    draw the sample grids of the ``best_grids`` best trials.

    Everything the user can get wrong (objective, classifier, data) is checked before the
    directory is created. ``runs_root`` is where the default classifier run is looked for.

    ``distributed``: this process's part in a search over several processes (KerasTuner's
    chief/worker mode). The chief serves the oracle, trains nothing and writes the results; a
    worker trains the trials the oracle gives it and returns what it trained.
    """
    tuner_dir = Path(tuner_dir)
    settings.validate()
    if best_grids < 0:
        raise ValueError(f"--best-grids must be >= 0, got {best_grids}")
    config = settings.train
    cls = get_model_class(config.model)
    if settings.objective is not None:
        check_objective_name(settings.objective, cls)  # fail fast, before loading the data
    if config.coordinator is not None or (config.num_processes or 1) > 1:
        raise ValueError("kgen tune trains each trial data-parallel on this process's devices (--devices); "
                         "to spread a search over processes or hosts, run a distributed search (--tuner-id)")
    if distributed is not None:  # before any data: a port taken, or no oracle to work for
        if distributed.is_chief:
            kgen_distributed.check_can_listen(distributed)
        else:
            kgen_distributed.wait_for_oracle(distributed)
    distribution = setup_distribution(config)
    config.precision, _ = resolve_precision(config.precision)  # tune.json keeps what "auto" chose
    data, data_range = load_data(config)
    hypermodel = KgenHyperModel(settings, data, data_range, distribution)
    probe = hypermodel.build(keras_tuner.HyperParameters())  # the first values of the space
    objective = settings.objective or default_objective(probe)
    has_test = data.test is not None
    check_objective(objective, probe, has_test)
    direction = settings.direction or objective_direction(objective)
    computed = COMPUTED_OBJECTIVES.get(objective)
    if computed is not None:
        classifier_run = None
        if computed.needs_classifier:
            classifier_run = classifier_for(config.dataset, runs_root, settings.classifier)
            print(f"[kgen] {objective} of {settings.eval_samples} samples judged by {classifier_run.path}",
                  file=sys.stderr)
        search = SearchData(data, data_range, config.seed, settings.eval_samples, classifier_run)
        hypermodel.objective_callbacks = [computed.callback(probe, search)]
    elif settings.classifier is not None:
        raise ValueError(f"--classifier judges samples for the fid, kid and classifier_score objectives, not {objective}")
    del probe

    tuner_dir.mkdir(parents=True, exist_ok=True)
    worker = distributed.tuner_id if distributed is not None and not distributed.is_chief else None
    if worker is None:  # the chief's settings are the search's
        # The resolved objective is saved too: a resumed search keeps it even if the defaults change.
        write_json(settings_file(tuner_dir), {**settings.to_dict(), "objective": objective, "direction": direction})
    log_root = tuner_dir / "logs"
    # KerasTuner reads its variables while the tuner is made, searches and saves.
    with (kgen_distributed.kerastuner_environment(distributed) if distributed else contextlib.nullcontext()):
        tuner = make_tuner(settings, hypermodel, objective, direction, tuner_dir, worker)
        if distributed is not None and distributed.is_chief:
            serve_search(tuner, distributed, verbose)
        else:
            run_search(tuner, distributed, config.epochs, log_root, verbose)
    if worker is not None:
        return TuneResult(tuner_dir, objective, direction, [], None, tuner_dir / "results.csv", None, log_root, [],
                          worker=worker, trained=tuner.trained)

    rows = results_rows(tuner)
    results_path = tuner_dir / "results.csv"
    write_results(results_path, rows)
    best_trials = [trial for trial in tuner.oracle.get_best_trials(1) if trial.status == "COMPLETED"]
    best, best_path, grids = None, None, []
    if best_trials:
        best = next(row for row in rows if row["trial"] == best_trials[0].trial_id)
        best_path = tuner_dir / "best_config.json"
        write_json(best_path, asdict(best_config(settings, best_trials[0])))
        grids = draw_best_grids(tuner, settings, data, data_range, tuner_dir, log_root, best_grids)
    unfinished = [row["trial"] for row in rows if row["status"] == "RUNNING"]
    return TuneResult(tuner_dir, objective, direction, rows, best, results_path, best_path, log_root, grids,
                      trained=getattr(tuner, "trained", []), unfinished=unfinished)


def run_search(tuner, distributed: DistributedSearch | None, epochs: int, log_root: Path,
               verbose: int | str) -> None:
    """Train trials until the oracle has no more: this process's own, or a distributed search's chief's."""
    # KerasTuner deep-copies this per trial and points it at logs/<trial>/execution0.
    board = kgen_callbacks.TensorBoard(log_dir=str(log_root), write_graph=False)
    debug, kt_config.DEBUG = kt_config.DEBUG, False  # a failed trial is one line, not KerasTuner's traceback
    try:
        tuner.search(epochs=epochs, callbacks=[board], verbose=verbose)
    except RuntimeError as exc:
        if "consecutive failures" not in str(exc):
            raise
        last = tuner.oracle.trials[tuner.oracle.end_order[-1]]
        raise SearchFailed(f"the search stopped after {tuner.oracle.max_consecutive_failed_trials} failed trials in a "
                           f"row; the last: {failure(last)}") from None
    except grpc.RpcError as exc:  # the chief refused a report (it stopped the search) or went away
        raise RuntimeError(f"the oracle at {distributed.address} failed this worker's call "
                           f"({exc.code().name}: {exc.details()})") from None
    finally:
        kt_config.DEBUG = debug
        if tuner._heartbeat is not None:
            tuner._heartbeat.stop()


def serve_search(tuner, distributed: DistributedSearch, verbose: int | str) -> None:
    """The chief's part: serve KerasTuner's oracle to the workers until the search is over, bringing
    results.csv up to date after every trial a worker ends (``kgen.tuning.distributed.serve``)."""
    tuner.oracle.verbose = verbose  # what KerasTuner's search() sets on the chief before it serves
    tuner.save()

    def trial_ended(trial_id: str) -> None:
        tuner.record_trial_end(tuner.oracle.trials.get(trial_id))

    if kgen_distributed.serve(tuner.oracle, distributed, trial_ended):
        last = tuner.oracle.trials[tuner.oracle.end_order[-1]]
        raise SearchFailed(f"the search stopped after {tuner.oracle.max_consecutive_failed_trials} failed trials in a "
                           f"row; the last: {failure(last)}")
