"""Run directories: config.json, model.keras, checkpoints, TensorBoard logs, metrics.json.

    runs/<model>-<dataset>-<timestamp>/
        config.json            everything `kgen train --config` needs to repeat the run
        model.keras            the model after the last completed epoch
        checkpoints/           epoch-NNNN.weights.h5 (weights + optimizer state), latest.json
        logs/                  TensorBoard: train/, validation/ scalars, images/ grids
        samples/               the same grids as PNG files
        metrics.json           per-epoch history and the final evaluation

Every file is written to a temporary name and renamed into place, so a run
killed at any moment (kill -9 included) keeps its last complete checkpoint.
A run is found (``Run.open``, ``latest_run``, ``classifier_for``) and its model
loaded (``load_model``) here.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import keras

import kgen.models  # noqa: F401 - registers every model class, so load_model can deserialize any run
from kgen.files import FileError, archive_problem, atomic_write, checksum_path, checksum_problem, read_json, \
    sha256_of, write_checksum, write_json

CHECKPOINTS_KEPT = 2


class RunError(FileError):
    """A run directory is missing, corrupt or would be overwritten; the message is for the user."""


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.]+", "_", Path(text).stem if os.sep in text else text).strip("_") or "data"


def create_run_dir(model: str, dataset: str, run_dir: str | None = None, root: str | Path = "runs") -> Path:
    """A new, empty run directory; an existing one is never reused."""
    if run_dir is not None:
        path = Path(run_dir)
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise RunError(f"run directory {path} already exists; choose another --run-dir or --resume it")
        path.mkdir(parents=True, exist_ok=True)
        return path
    base = Path(root) / f"{model}-{slug(dataset)}-{time.strftime('%Y%m%d-%H%M%S')}"
    path, n = base, 1
    while True:
        try:
            path.mkdir(parents=True)
            return path
        except FileExistsError:
            n += 1
            path = base.with_name(f"{base.name}-{n}")


class Run:
    """Paths and state of one run directory."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    config_path = property(lambda self: self.path / "config.json")
    model_path = property(lambda self: self.path / "model.keras")
    checkpoint_dir = property(lambda self: self.path / "checkpoints")
    log_dir = property(lambda self: self.path / "logs")
    samples_dir = property(lambda self: self.path / "samples")
    metrics_path = property(lambda self: self.path / "metrics.json")

    @classmethod
    def open(cls, path: str | Path) -> "Run":
        """An existing run; RunError if it is not one."""
        run = cls(path)
        if not run.path.is_dir():
            raise RunError(f"no run at {run.path}")
        if not run.config_path.is_file():
            raise RunError(f"{run.path} is not a kgen run (no config.json)")
        run.config()  # raises on corruption
        return run

    def config(self) -> dict:
        config = read_json(self.config_path)
        if not isinstance(config, dict) or "model" not in config:
            raise RunError(f"{self.config_path} is corrupt (no model)")
        return config

    def write_config(self, config: dict) -> None:
        write_json(self.config_path, config)

    # -- checkpoints ---------------------------------------------------------------
    # Every epoch-NNNN.weights.h5 has a sidecar epoch-NNNN.weights.h5.sha256 (`sha256sum -c` reads it),
    # written before the weights are renamed into place; latest.json, written last, commits the epoch.
    def checkpoints(self) -> list[tuple[int, Path]]:
        """(epoch, weights file) of every checkpoint on disk, newest first (intact or not)."""
        found = []
        for path in self.checkpoint_dir.glob("epoch-*.weights.h5"):
            match = re.fullmatch(r"epoch-(\d+)\.weights\.h5", path.name)
            if match:
                found.append((int(match.group(1)), path))
        return sorted(found, reverse=True)

    def committed_epoch(self) -> int | None:
        """The epoch latest.json commits (None: no epoch completed); RunError if it is corrupt."""
        latest = self.checkpoint_dir / "latest.json"
        if not latest.exists():
            return None
        info = read_json(latest)
        if not isinstance(info, dict) or not isinstance(info.get("epoch"), int):
            raise RunError(f"{latest} is corrupt (no epoch)")
        return info["epoch"]

    def latest_checkpoint(self, report=None) -> tuple[int, Path] | None:
        """(completed epochs, weights file) of the newest intact committed checkpoint, or None when no
        epoch completed. A checkpoint whose bytes do not match its recorded checksum (or that has none)
        is skipped for the one before it, and ``report`` (e.g. print) is told why; RunError when none
        is intact. A corrupt latest.json falls back to the newest intact checkpoint on disk."""
        try:
            committed = self.committed_epoch()
        except FileError as exc:
            committed = None if not self.checkpoints() else max(e for e, _ in self.checkpoints())
            if report is not None and committed is not None:
                report(f"{exc}; using the checkpoints on disk")
        if committed is None:
            return None
        candidates = [(e, p) for e, p in self.checkpoints() if e <= committed]
        for epoch, path in candidates:
            problem = checksum_problem(path)
            if problem is None:
                return epoch, path
            if report is not None:
                report(f"checkpoint {path} is corrupt ({problem}); skipping it")
        raise RunError(f"no intact checkpoint in {self.checkpoint_dir} (epoch {committed} was committed); "
                       "the run cannot be resumed")

    def save_checkpoint(self, model, epoch: int) -> Path:
        """Weights and optimizer state after ``epoch`` completed epochs (with their checksum); then
        model.keras; then latest.json, which commits the epoch."""
        self.checkpoint_dir.mkdir(exist_ok=True)
        name = f"epoch-{epoch:04d}.weights.h5"

        def write_weights(tmp: Path) -> None:
            model.save_weights(tmp)
            write_checksum(self.checkpoint_dir / name, sha256_of(tmp))

        atomic_write(self.checkpoint_dir / name, write_weights)
        atomic_write(self.model_path, lambda tmp: model.save(tmp))
        write_json(self.checkpoint_dir / "latest.json", {"epoch": epoch, "weights": name})
        for old_epoch, old in self.checkpoints()[CHECKPOINTS_KEPT:]:
            old.unlink()
            checksum_path(old).unlink(missing_ok=True)
        return self.checkpoint_dir / name

    # -- metrics -----------------------------------------------------------------
    def metrics(self) -> dict:
        return read_json(self.metrics_path) if self.metrics_path.exists() else {"history": []}

    def record_epoch(self, epoch: int, logs: dict) -> None:
        metrics = self.metrics()
        history = [h for h in metrics.get("history", []) if h["epoch"] < epoch]
        history.append({"epoch": epoch, **{k: float(v) for k, v in logs.items()}})
        metrics["history"] = history
        write_json(self.metrics_path, metrics)

    def record(self, results: dict, *section: str) -> None:
        """Store ``results`` (numbers as floats) in metrics.json under ``section``, e.g. ("evaluation", "test")."""
        metrics = self.metrics()
        parent = metrics
        for key in section[:-1]:
            parent = parent.setdefault(key, {})
        parent[section[-1]] = {k: v if isinstance(v, str) else float(v) for k, v in results.items()}
        write_json(self.metrics_path, metrics)


def latest_run(model: str, dataset: str | None = None, root: str | Path = "runs") -> Run | None:
    """The newest completed run of ``model`` (on ``dataset``, when given) under ``root``, or None."""
    found = []
    for config_path in Path(root).glob("*/config.json"):
        run = Run(config_path.parent)
        try:
            config = run.config()
        except FileError:
            continue
        if config.get("model") == model and run.model_path.is_file() and dataset in (None, config.get("dataset")):
            found.append((run.model_path.stat().st_mtime, run))
    return max(found, key=lambda item: item[0])[1] if found else None


def load_model(run: "Run | str | Path", precision: str | None = None) -> keras.Model:
    """The model of a run (after its last completed epoch), under the current backend; ``precision``
    (a dtype policy, e.g. "float32") recomputes a mixed-precision run's model in it (its variables
    are float32 either way)."""
    run = run if isinstance(run, Run) else Run.open(run)
    if not run.model_path.is_file():
        raise RunError(f"{run.path} has no model.keras yet (no epoch completed)")
    problem = archive_problem(run.model_path)
    if problem is not None:
        raise RunError(f"{run.model_path} is corrupt ({problem}); `kgen train --resume {run.path}` rewrites it "
                       "from the last intact checkpoint")
    try:
        model = keras.models.load_model(run.model_path, compile=False)
    except Exception as exc:  # noqa: BLE001 - a broken archive is a user-facing error
        raise RunError(f"{run.model_path} cannot be loaded ({type(exc).__name__}: {exc})") from None
    if precision is not None and model.dtype_policy.name != precision:
        recast = type(model).from_config({**model.get_config(), "dtype_policy": precision})
        recast.set_weights(model.get_weights())
        return recast
    return model


def find_classifier(run: Run, classifier: str | Path | None) -> Run:
    """The classifier run to judge ``run``'s samples with: the one given, else the newest
    ``classifier`` run on the same dataset in the same runs folder."""
    return classifier_for(run.config()["dataset"], run.path.parent, classifier)


def classifier_for(dataset: str, root: str | Path, classifier: str | Path | None = None) -> Run:
    """The classifier run ``classifier`` (checked to be one), else the newest on ``dataset`` under ``root``."""
    if classifier is not None:
        found = Run.open(classifier)
        if found.config()["model"] != "classifier":
            raise RunError(f"--classifier {classifier} is a '{found.config()['model']}' run, not a classifier")
        return found
    found = latest_run("classifier", dataset, root)
    if found is None:
        raise RunError(f"no classifier run on '{dataset}' in {root}; train one with "
                       f"`kgen train classifier --dataset {dataset}` or pass --classifier RUN")
    return found
