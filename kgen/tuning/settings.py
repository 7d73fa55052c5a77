"""The settings of a search (tune.json) and of a distributed search's processes, checked without Keras.

`kgen tune` refuses bad options, a missing search to resume and a malformed oracle address before
TensorFlow, JAX or torch is imported, as `kgen train` does (``kgen.config``, ``kgen.catalog``); what
needs the models' classes (their default spaces, objectives) is checked in ``kgen.tuning.search``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import kgen
from kgen.catalog import get_spec
from kgen.config import EVAL_SAMPLES, EXECUTION_FIELDS, RUN_FIELDS, TrainConfig
from kgen.files import read_json, slug

TUNERS = ("random", "hyperband", "bayesian")
TRIAL_EPOCHS = 10  # each trial's epochs without --epochs (a search trains many models: short ones)
DIRECTIONS = ("min", "max")


@dataclass
class TuneSettings:
    """Everything that defines a search; saved as tune.json in the tuner directory.

    ``train`` holds the data and training settings every trial shares and the model options fixed
    on the command line; ``train.epochs`` is each trial's length (Hyperband: the longest one).
    """

    train: TrainConfig
    tuner: str = "random"
    max_trials: int = 10
    objective: str | None = None  # None: the model's default (its tuning_objective)
    direction: str | None = None  # None: the objective's (COMPUTED_OBJECTIVES, MAXIMIZED)
    space: dict[str, Any] = field(default_factory=dict)  # resolved, in file form (spec_to_json)
    classifier: str | None = None  # the classifier run judging samples for fid/kid/classifier_score
    eval_samples: int = EVAL_SAMPLES  # samples / held-out images behind the computed objectives

    def validate(self) -> None:
        """Raise ValueError with a user-facing message for impossible settings."""
        if self.tuner not in TUNERS:
            raise ValueError(f"--tuner must be one of {', '.join(TUNERS)}, got '{self.tuner}'")
        if self.max_trials < 1:
            raise ValueError(f"--max-trials must be >= 1, got {self.max_trials}")
        if self.direction is not None and self.direction not in DIRECTIONS:
            raise ValueError(f"--direction must be min or max, got '{self.direction}'")
        if self.eval_samples < 2:
            raise ValueError(f"--eval-samples must be >= 2, got {self.eval_samples}")
        if self.train.eval_every or self.train.classifier:
            raise ValueError("--eval-every is for `kgen train`; tune by --objective fid instead")
        # validate() parses the fixed model options; it would also fill in the model's default
        # learning rate, but None here means "not fixed": the space searches it.
        rate = self.train.learning_rate
        self.train.validate()
        self.train.learning_rate = rate

    def to_dict(self) -> dict:
        return {**asdict(self), "backend": kgen.active_backend(), "kgen_version": kgen.__version__}

    @classmethod
    def from_dict(cls, data: dict) -> TuneSettings:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**{**known, "train": TrainConfig.from_dict(known["train"])})


def settings_file(tuner_dir: Path) -> Path:
    return Path(tuner_dir) / "tune.json"


def default_tuner_dir(model: str, dataset: str) -> Path:
    return Path("tuning") / f"{model}-{slug(dataset)}"


# What `kgen tune` options the settings come from; compared when a search is resumed.
TUNE_FIELDS = ("tuner", "max_trials", "objective", "direction", "classifier", "eval_samples")
# The run settings a search gives every trial (the learning rate is searched or fixed on its own;
# FID during training is `kgen train`'s, the search has its objective).
TRAIN_FIELDS = tuple(f for f in RUN_FIELDS if f not in ("learning_rate", "eval_every", "classifier"))


def check_settings(model: str | None, given: dict[str, Any], model_options: dict[str, Any],
                   tuner_dir: str | Path | None = None, resume: bool = False,
                   joining: bool = False) -> tuple[TuneSettings, Path]:
    """The settings of a new search (its space not yet resolved), or the saved settings of the one in
    ``tuner_dir`` when ``resume``, with every option given checked against them except the space.

    ``given`` holds the options given on the command line (``TUNE_FIELDS``, ``TRAIN_FIELDS`` and
    ``learning_rate``); a resumed search takes its saved settings, and options given again must
    agree with them, except ``max_trials``, which may grow. ``joining``: a worker of a distributed
    search, whose tuner directory may already hold the chief's files.
    """
    unknown = set(given) - set(TUNE_FIELDS) - set(TRAIN_FIELDS) - {"learning_rate"}
    if unknown:
        raise ValueError(f"unknown tune settings: {', '.join(sorted(unknown))}")
    if resume:
        if tuner_dir is None:
            if model is None:
                raise ValueError("--resume needs the search: name the model (and --dataset) or give --tuner-dir")
            tuner_dir = default_tuner_dir(model, given.get("dataset", "mnist"))
        return resumed_settings(Path(tuner_dir), model, given, model_options), Path(tuner_dir)
    if not model:
        raise ValueError("name a model to tune (e.g. `kgen tune vae`); `kgen list` shows the models")
    get_spec(model)  # unknown model -> ValueError listing the names
    train = TrainConfig(model=model, model_options=dict(model_options),
                        **{"epochs": TRIAL_EPOCHS,
                           **{k: v for k, v in given.items() if k in TRAIN_FIELDS or k == "learning_rate"}})
    settings = TuneSettings(train=train, **{k: v for k, v in given.items() if k in TUNE_FIELDS})
    settings.validate()  # parses the fixed model options
    tuner_dir = Path(tuner_dir) if tuner_dir is not None else default_tuner_dir(model, settings.train.dataset)
    if not joining and tuner_dir.exists() and (not tuner_dir.is_dir() or any(tuner_dir.iterdir())):
        raise ValueError(f"tuner directory {tuner_dir} already exists; continue its search with --resume "
                         "or choose another --tuner-dir")
    return settings, tuner_dir


def resumed_settings(tuner_dir: Path, model: str | None, given: dict[str, Any],
                     model_options: dict[str, Any]) -> TuneSettings:
    """The settings saved in ``tuner_dir``; ValueError naming every option given that differs."""
    path = settings_file(tuner_dir)
    if not path.is_file():
        raise ValueError(f"no search to resume in {tuner_dir} (no tune.json)")
    data = read_json(path)  # RunError naming the file when it is not JSON
    try:
        saved = TuneSettings.from_dict(data)
    except (TypeError, KeyError, ValueError, AttributeError) as exc:
        raise ValueError(f"{path} is corrupt ({exc})") from None
    differ = []

    def compare(flag: str, new: Any, old: Any) -> None:
        if new != old:
            differ.append(f"{flag} {new} (the search has {old})")

    if model is not None:
        compare("model", model, saved.train.model)
    for name, value in given.items():
        if name == "max_trials":
            continue
        if name in EXECUTION_FIELDS:  # the devices a search runs on may change when it resumes
            setattr(saved.train, name, value)
            continue
        old = getattr(saved, name) if name in TUNE_FIELDS else getattr(saved.train, name)
        compare("--" + name.replace("_", "-"), value, old)
    if model_options:
        probe = TrainConfig(model=saved.train.model, model_options=dict(model_options))
        probe.validate()
        for name, value in probe.model_options.items():
            compare("--" + name.replace("_", "-"), value, saved.train.model_options.get(name))
    if differ:
        raise ValueError(f"--resume continues the search in {tuner_dir} as it was set up; these differ: "
                         + "; ".join(differ))
    if "max_trials" in given:
        saved.max_trials = given["max_trials"]
    saved.validate()
    return saved


# -- a search spread over processes: KerasTuner's chief/worker mode ------------------------------
CHIEF = "chief"
# The environment KerasTuner reads (keras_tuner/src/distribute/utils.py, base_tuner.py, oracle_client.py).
KERASTUNER_VARIABLES = ("KERASTUNER_TUNER_ID", "KERASTUNER_ORACLE_IP", "KERASTUNER_ORACLE_PORT")
DEFAULT_WORKER_TIMEOUT = 60.0  # seconds without word from a worker before the chief gives its trial away
DEFAULT_ORACLE_TIMEOUT = 60.0  # seconds a worker waits for the oracle when it starts
# A worker's name is a file name in the tuner directory (search/<id>.json).
TUNER_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


@dataclass(frozen=True)
class DistributedSearch:
    """This process's part in a search spread over processes or hosts.

    One process, the chief (``tuner_id`` "chief"), runs KerasTuner's oracle as a gRPC server on
    ``host:port``; it trains nothing and writes results.csv and best_config.json. Every other process
    is a worker named ``tuner_id``: it asks the oracle for trials, trains them and reports back.
    """

    host: str
    port: int
    tuner_id: str
    worker_timeout: float = DEFAULT_WORKER_TIMEOUT  # the chief's patience with a silent worker
    oracle_timeout: float = DEFAULT_ORACLE_TIMEOUT  # a worker's patience with an oracle that does not answer

    @property
    def is_chief(self) -> bool:
        return self.tuner_id == CHIEF

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"  # as KerasTuner joins KERASTUNER_ORACLE_IP and _PORT

    def environment(self) -> dict[str, str]:
        """The variables that put KerasTuner in chief/worker mode."""
        return {"KERASTUNER_TUNER_ID": self.tuner_id, "KERASTUNER_ORACLE_IP": self.host,
                "KERASTUNER_ORACLE_PORT": str(self.port)}


def distributed_search(oracle: str | None = None, tuner_id: str | None = None, worker_timeout: float | None = None,
                       oracle_timeout: float | None = None,
                       environ: Mapping[str, str] | None = None) -> DistributedSearch | None:
    """This process's part in a distributed search from ``--oracle HOST:PORT`` and ``--tuner-id``, each
    else from the variables KerasTuner reads; None for a search in one process. ValueError with a
    user-facing message for an address, name or timeout that cannot work."""
    environ = os.environ if environ is None else environ
    if oracle is None:
        ip, port = environ.get("KERASTUNER_ORACLE_IP"), environ.get("KERASTUNER_ORACLE_PORT")
        if bool(ip) != bool(port):
            have, missing = ("KERASTUNER_ORACLE_IP", "KERASTUNER_ORACLE_PORT")[::1 if ip else -1]
            raise ValueError(f"{have} is set but {missing} is not; set both, or give --oracle HOST:PORT")
        oracle = f"{ip}:{port}" if ip else None
    tuner_id = tuner_id if tuner_id is not None else environ.get("KERASTUNER_TUNER_ID") or None
    for name, value in (("--worker-timeout", worker_timeout), ("--oracle-timeout", oracle_timeout)):
        if value is not None and not value > 0:
            raise ValueError(f"{name} must be > 0 seconds, got {value:g}")
    if oracle is None:
        if tuner_id is not None and "KERASTUNER_TUNER_ID" not in environ:
            raise ValueError("--tuner-id is for a distributed search: give the oracle's --oracle HOST:PORT too")
        if worker_timeout is not None or oracle_timeout is not None:
            raise ValueError("--worker-timeout and --oracle-timeout are for a distributed search (--oracle HOST:PORT)")
        return None
    host, port = parse_oracle_address(oracle)
    if tuner_id is None:
        raise ValueError(f"--oracle {oracle} needs --tuner-id: chief for the process that runs the oracle, a "
                         "worker's name (tuner1, ...) for every other")
    if not TUNER_ID_PATTERN.fullmatch(tuner_id):
        raise ValueError(f"--tuner-id must be chief or a name of letters, digits, '_', '-' and '.', got {tuner_id!r}")
    if tuner_id != CHIEF and CHIEF in tuner_id:
        # KerasTuner takes any id containing "chief" for the chief (distribute/utils.py).
        raise ValueError(f"--tuner-id {tuner_id}: a worker's name must not contain 'chief'")
    return DistributedSearch(host, port, tuner_id,
                             DEFAULT_WORKER_TIMEOUT if worker_timeout is None else float(worker_timeout),
                             DEFAULT_ORACLE_TIMEOUT if oracle_timeout is None else float(oracle_timeout))


def parse_oracle_address(text: str) -> tuple[str, int]:
    """'HOST:PORT' -> (host, port); ValueError for anything else (KerasTuner joins the two with a
    colon, so an IPv6 address cannot be written: use a host name)."""
    host, _, port = text.strip().rpartition(":")
    if not host or ":" in host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"--oracle must be HOST:PORT with a port in 1..65535 (e.g. 10.0.0.5:8000), got {text!r}")
    return host, int(port)
