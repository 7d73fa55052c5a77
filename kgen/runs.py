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
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
from pathlib import Path
from typing import Any

CHECKPOINTS_KEPT = 2


class RunError(ValueError):
    """A run directory is missing, corrupt or would be overwritten; the message is for the user."""


def atomic_write(path: Path, write) -> None:
    """Call ``write(tmp_path)``, then rename tmp_path to ``path`` (atomic on one file system)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}-", suffix="".join(path.suffixes) or ".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_json(path: Path, data: Any) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n"))


def read_json(path: Path) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise RunError(f"{path} is missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RunError(f"{path} is corrupt ({exc})") from None


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
    def latest_checkpoint(self) -> tuple[int, Path] | None:
        """(completed epochs, weights file) of the last complete checkpoint, or None."""
        latest = self.checkpoint_dir / "latest.json"
        if not latest.exists():
            return None
        info = read_json(latest)
        weights = self.checkpoint_dir / str(info.get("weights", ""))
        if not weights.is_file():
            raise RunError(f"checkpoint {weights} named in {latest} is missing")
        return int(info["epoch"]), weights

    def save_checkpoint(self, model, epoch: int) -> Path:
        """Weights and optimizer state after ``epoch`` completed epochs; then model.keras."""
        self.checkpoint_dir.mkdir(exist_ok=True)
        name = f"epoch-{epoch:04d}.weights.h5"
        atomic_write(self.checkpoint_dir / name, lambda tmp: model.save_weights(tmp))
        atomic_write(self.model_path, lambda tmp: model.save(tmp))
        write_json(self.checkpoint_dir / "latest.json", {"epoch": epoch, "weights": name})
        for old in sorted(self.checkpoint_dir.glob("epoch-*.weights.h5"))[:-CHECKPOINTS_KEPT]:
            old.unlink()
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
        except RunError:
            continue
        if config.get("model") == model and run.model_path.is_file() and dataset in (None, config.get("dataset")):
            found.append((run.model_path.stat().st_mtime, run))
    return max(found, key=lambda item: item[0])[1] if found else None
