"""The settings of a training run (a run's config.json), checked without importing Keras.

Everything here answers at once: `kgen train` refuses bad options, config files and dataset paths
before TensorFlow, JAX or torch is imported (``kgen.catalog`` holds the models' declarations).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import kgen
from kgen.catalog import get_spec

LR_SCHEDULES = ("constant", "cosine")
# Samples (and held-out images) behind the FID logged during training with --eval-every, and behind a
# search's computed objectives (fid, kid, ...) unless --eval-samples says otherwise.
EVAL_SAMPLES = 2000
# Keras dtype policies: variables in float32, compute in 16 bits for the mixed ones ("auto": the
# fastest measured on the machine at hand, kgen.backend.precision).
PRECISIONS = ("auto", "float32", "mixed_bfloat16", "mixed_float16")
# "data-parallel" on the backend's own engine (kgen.backend.distribution); "auto": data-parallel when
# several devices or processes are asked for (--devices, --coordinator, a launcher's environment).
DISTRIBUTIONS = ("auto", "none", "data-parallel")
# The settings of how a run is executed, not of what it is: a run resumes with other values.
EXECUTION_FIELDS = ("distribute", "devices", "coordinator", "num_processes", "process_id", "distribution_timeout")


def looks_like_path(name: str) -> bool:
    """A dataset argument meant as a path (TFDS names have no slashes, dots or tildes)."""
    return any(c in name for c in ("/", os.sep, "~", "."))


def dataset_path_problem(name: str) -> str | None:
    """Why ``name``, written as a path, names no dataset kgen reads (None: fine, or a TFDS name)."""
    path = Path(name).expanduser()
    if not path.exists():
        if looks_like_path(name):
            return (f"{name}: no such file or folder (a dataset is a TFDS name such as mnist, a folder of IDX files "
                    "or images, or an .npz file)")
        return None
    if path.is_file() and path.suffix != ".npz":
        return f"{name}: not an .npz file, an IDX folder or an image folder"
    return None


@dataclass
class TrainConfig:
    """Everything that defines a training run; saved as the run's config.json."""

    model: str
    dataset: str = "mnist"
    data_dir: str | None = None
    epochs: int | None = None  # None: the model's default_steps batches, as epochs (kgen.train.default_epochs)
    batch_size: int = 128
    learning_rate: float | None = None  # None: the model's default_learning_rate
    steps_per_epoch: int | None = None
    validation_steps: int | None = None
    seed: int = 0
    binarize: bool = False
    lr_schedule: str = "constant"
    jit: bool | None = None
    steps_per_execution: int | None = None
    eval_every: int | None = None  # epochs between FID/KID evaluations during training
    classifier: str | None = None  # the classifier run that judges samples (default: the newest on the dataset)
    precision: str = "auto"  # PRECISIONS; a run records the precision "auto" chose
    distribute: str = "auto"  # DISTRIBUTIONS
    devices: str | int | None = None  # this process's devices: "N", "all" or names ("gpu:0,gpu:1")
    coordinator: str | None = None  # host:port of process 0 (TensorFlow: every worker's, in order)
    num_processes: int | None = None
    process_id: int | None = None
    distribution_timeout: float = 60.0  # seconds to wait for the coordinator and the other processes
    model_options: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        """Raise ValueError with a user-facing message for impossible settings."""
        for name in ("epochs", "batch_size"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        for name in ("steps_per_epoch", "validation_steps", "steps_per_execution", "eval_every"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
        if kgen.active_backend() == "torch" and self.steps_per_execution not in (None, 1):
            raise ValueError("--steps-per-execution must be 1 on the torch backend (Keras runs one step per call there)")
        for name in ("steps_per_epoch", "validation_steps"):
            value = getattr(self, name)
            if self.steps_per_execution and value and value % self.steps_per_execution:
                raise ValueError(f"--steps-per-execution {self.steps_per_execution} must divide "
                                 f"--{name.replace('_', '-')} {value}")
        self.validate_execution()
        if self.precision not in PRECISIONS:
            raise ValueError(f"--precision must be one of {', '.join(PRECISIONS)}, got '{self.precision}'")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"--lr-schedule must be one of {', '.join(LR_SCHEDULES)}, got '{self.lr_schedule}'")
        if not isinstance(self.dataset, str) or not self.dataset:
            raise ValueError("--dataset must name a dataset")
        problem = dataset_path_problem(self.dataset)
        if problem:
            raise ValueError(problem)
        spec = get_spec(self.model)
        if self.eval_every and not spec.can("sample"):
            raise ValueError(f"--eval-every measures samples; model '{self.model}' cannot sample")
        if self.classifier is not None and not self.eval_every:
            raise ValueError("--classifier is used with --eval-every N (FID during training)")
        if self.learning_rate is None:
            self.learning_rate = spec.default_learning_rate
        if not (isinstance(self.learning_rate, (int, float)) and math.isfinite(self.learning_rate)
                and self.learning_rate > 0):
            raise ValueError(f"--learning-rate must be a finite number > 0, got {self.learning_rate}")
        # Every option checked with the model's defaults for the others (the rules between them);
        # only the options given are kept in the config.
        parsed = spec.parse_options(self.model_options)
        self.model_options = {name: parsed[name] for name in self.model_options}

    def validate_execution(self) -> None:
        """The distribution settings (checked again, against the machine, by kgen.backend.distribution)."""
        if self.distribute not in DISTRIBUTIONS:
            raise ValueError(f"--distribute must be one of {', '.join(DISTRIBUTIONS)}, got '{self.distribute}'")
        if self.devices is not None:
            text = str(self.devices).strip().lower()
            if not text or (text.isdigit() and int(text) < 1):
                raise ValueError(f"--devices must be a count >= 1, 'all' or device names (gpu:0,gpu:1), got "
                                 f"{self.devices!r}")
        for name in ("num_processes",):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
        if self.process_id is not None and (self.process_id < 0 or (self.num_processes or 1) <= self.process_id):
            raise ValueError(f"--process-id must be in 0..{(self.num_processes or 1) - 1}, got {self.process_id}")
        if not self.distribution_timeout > 0:
            raise ValueError(f"--distribution-timeout must be > 0 seconds, got {self.distribution_timeout}")
        if self.distribute == "none" and self.wants_distribution(ignore_setting=True):
            raise ValueError("--distribute none trains on one device; drop --devices/--coordinator or use "
                             "--distribute data-parallel")

    def wants_distribution(self, ignore_setting: bool = False) -> bool:
        """Whether this run trains data-parallel: asked for, or (``auto``) several devices or processes
        requested on the command line or by a launcher (torchrun, TF_CONFIG, Keras's JAX variables)."""
        if not ignore_setting and self.distribute != "auto":
            return self.distribute == "data-parallel"
        several_devices = self.devices is not None and str(self.devices).strip().lower() not in ("1",)
        launched = (int(os.environ.get("WORLD_SIZE", "1") or 1) > 1 or bool(os.environ.get("TF_CONFIG"))
                    or bool(os.environ.get("KERAS_DISTRIBUTION_JOB_ADDRESSES")))
        return several_devices or self.coordinator is not None or (self.num_processes or 1) > 1 or launched

    def execution(self) -> dict[str, Any]:
        """The execution settings (``EXECUTION_FIELDS``), for a resumed run to take from the command line."""
        return {name: getattr(self, name) for name in EXECUTION_FIELDS}

    @classmethod
    def from_dict(cls, data: Any, source: str = "config") -> "TrainConfig":
        """A config from JSON data (a run's config.json or a --config file); ValueError naming the key
        for anything that is not a config: unknown keys, values of the wrong type."""
        if not isinstance(data, dict):
            raise ValueError(f"{source} must be a JSON object of settings, got a {type(data).__name__}")
        known = {f.name: f for f in fields(cls)}
        unknown = set(data) - set(known) - RUN_RECORD_KEYS
        if unknown:
            raise ValueError(f"unknown keys in {source}: {', '.join(sorted(unknown))} (valid keys: "
                             f"{', '.join(known)})")
        for key, value in data.items():
            if key in known and not _has_type(value, known[key].type):
                raise ValueError(f"{source}: {key!r} must be {_type_words(known[key].type)}, got {value!r}")
        return cls(**{k: v for k, v in data.items() if k in known})


# What `kgen train` records in a run's config.json besides the TrainConfig fields.
RUN_RECORD_KEYS = frozenset({"backend", "kgen_version", "data_source", "data_range", "input_shape", "precision_reason",
                             "distribution"})
_JSON_TYPES = {"int": (int,), "float": (int, float), "bool": (bool,), "str": (str,), "dict[str, Any]": (dict,)}


def _type_parts(annotation: str) -> list[str]:
    """'int | None' -> ['int', 'None'] (the dataclass annotations are strings here)."""
    return [part.strip() for part in str(annotation).split("|")]


def _has_type(value: Any, annotation: str) -> bool:
    parts = _type_parts(annotation)
    if value is None:
        return "None" in parts
    if isinstance(value, bool):  # a bool is an int to Python, not to a config
        return "bool" in parts
    return any(isinstance(value, _JSON_TYPES[p]) for p in parts if p in _JSON_TYPES)


def _type_words(annotation: str) -> str:
    words = {"int": "an integer", "float": "a number", "bool": "true or false", "str": "a string",
             "dict[str, Any]": "an object", "None": "null"}
    return " or ".join(words.get(p, p) for p in _type_parts(annotation))


# Every setting of a run that the command line or a --config file gives (the model's own options aside).
RUN_FIELDS = tuple(f.name for f in fields(TrainConfig) if f.name not in ("model", "model_options"))
