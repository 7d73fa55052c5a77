"""What kgen knows of its models without importing Keras: names, descriptions, options, rules.

A model declares its options (:class:`Option`) and the rules between them (:class:`Rule`) on its
class, in its own file. Importing a model file imports Keras (and with it TensorFlow, JAX or torch:
seconds), so the command line reads the same declarations from a catalog cached as JSON, keyed by a
digest of the model sources: `kgen list`, `kgen train MODEL --help` and every usage error about
options answer without a backend. The first command after a model file changes rebuilds the cache
(one import of the models); a cache that cannot be written is simply rebuilt next time.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import kgen

PACKAGE = Path(__file__).resolve().parent
# The sources the declarations come from: a change to any of them rebuilds the catalog.
SOURCES = ("catalog.py", "models", "nets")


# -- declarations ------------------------------------------------------------------------------
def _positive_int_list(value: str, flag: str) -> str:
    """'300,150' -> '300,150' (normalised); comma-separated positive integers."""
    try:
        widths = [int(w) for w in str(value).split(",") if w.strip()]
    except ValueError:
        widths = []
    if not widths or min(widths) < 1:
        raise ValueError(f"{flag} must be comma-separated positive integers such as 300,150, got {value!r}")
    return ",".join(map(str, widths))


def _count_or_all(value: str, flag: str) -> str:
    """A positive number of examples, or 'all'."""
    text = str(value).strip().lower()
    if text != "all" and not (text.isdigit() and int(text) > 0):
        raise ValueError(f"{flag} expects a number of examples or 'all', got {value!r}")
    return text


# Checks of a string option's form, by name (a name, not a function, so the catalog stays JSON).
FORMS: dict[str, Callable[[str, str], str]] = {"positive_int_list": _positive_int_list, "count_or_all": _count_or_all}
TYPES = {"int": int, "float": float, "str": str, "bool": bool}
# What a dataset tells a model (``Option.from_data``): its number of classes, its training examples.
DATA_FACTS = ("num_classes", "num_train")


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


@dataclass(frozen=True)
class Option:
    """A model hyperparameter, shown by ``kgen list`` and settable as ``--name value``.

    ``minimum``/``maximum`` bound numbers (strictly when ``exclusive``); ``form`` names a check of a
    string's form (``FORMS``); a ``default`` of None means the model derives the value ("auto");
    ``from_data`` names the dataset fact that fills it when not given (``DATA_FACTS``).
    """

    name: str
    type: type
    default: Any
    help: str
    choices: tuple | None = None
    minimum: float | None = None
    maximum: float | None = None
    exclusive: bool = False
    form: str | None = None
    from_data: str | None = None

    def parse(self, raw: Any) -> Any:
        """Convert and validate a value; raises ValueError with a user-facing message."""
        name = flag(self.name)
        if raw is None and self.default is None:
            return None  # "auto": the model derives it from other options
        try:
            if self.type is bool and isinstance(raw, str):
                if raw.lower() not in ("1", "0", "true", "false", "yes", "no"):
                    raise ValueError
                value = raw.lower() in ("1", "true", "yes")
            elif self.type in (int, float) and isinstance(raw, bool):
                raise ValueError
            elif self.type is int and isinstance(raw, float) and not raw.is_integer():
                raise ValueError
            else:
                value = self.type(raw)
        except (TypeError, ValueError, OverflowError):
            raise ValueError(f"{name} expects {'an' if self.type is int else 'a'} {self.type.__name__}, got {raw!r}") from None
        if self.type is float and not math.isfinite(value):
            raise ValueError(f"{name} must be a finite number, got {raw!r}")
        if self.choices is not None and value not in self.choices:
            raise ValueError(f"{name} must be one of {', '.join(map(str, self.choices))}, got {raw!r}")
        low = self.minimum is not None and (value <= self.minimum if self.exclusive else value < self.minimum)
        high = self.maximum is not None and (value >= self.maximum if self.exclusive else value > self.maximum)
        if low or high:
            raise ValueError(f"{name} must be {self.bounds()}, got {raw!r}")
        if self.form is not None:
            value = FORMS[self.form](value, name)
        return value

    def bounds(self) -> str:
        """The allowed range in words: '>= 1', 'strictly between 0 and 1', 'in [0, 1]'."""
        if self.minimum is not None and self.maximum is not None:
            if self.exclusive:
                return f"strictly between {self.minimum:g} and {self.maximum:g}"
            return f"in [{self.minimum:g}, {self.maximum:g}]"
        if self.minimum is not None:
            return f"{'>' if self.exclusive else '>='} {self.minimum:g}"
        return f"{'<' if self.exclusive else '<='} {self.maximum:g}" if self.maximum is not None else "any value"

    def to_json(self) -> dict:
        return {**asdict(self), "type": self.type.__name__, "choices": list(self.choices) if self.choices else None}

    @classmethod
    def from_json(cls, data: dict) -> "Option":
        return cls(**{**data, "type": TYPES[data["type"]],
                      "choices": tuple(data["choices"]) if data["choices"] is not None else None})


@dataclass(frozen=True)
class Rule:
    """Options that constrain each other: when every ``when`` option has one of its values, every
    ``require`` option must have one of its values (a [low, high] range for ``in_range``), else
    ``message`` (formatted with the options' values) is the error."""

    when: dict[str, tuple]
    message: str
    require: dict[str, tuple] = field(default_factory=dict)
    in_range: dict[str, tuple[float, float]] = field(default_factory=dict)

    def check(self, values: dict[str, Any]) -> None:
        if not all(values.get(k) in allowed for k, allowed in self.when.items()):
            return
        broken = [k for k, allowed in self.require.items() if values.get(k) not in allowed]
        broken += [k for k, (low, high) in self.in_range.items() if not low <= values.get(k) <= high]
        if broken:
            raise ValueError(self.message.format(**values))

    def describe(self) -> str:
        """'with --jacobian closed-form: --arch shallow, --code-activation sigmoid'."""
        def values(allowed):
            return "|".join("auto" if v is None else str(v).lower() for v in allowed)

        when = " ".join(f"{flag(k)} {values(v)}" for k, v in self.when.items())
        need = [f"{flag(k)} {values(v)}" for k, v in self.require.items()]
        need += [f"{flag(k)} in [{low:g}, {high:g}]" for k, (low, high) in self.in_range.items()]
        return f"with {when}: {', '.join(need)}"

    def to_json(self) -> dict:
        return {"when": {k: list(v) for k, v in self.when.items()}, "message": self.message,
                "require": {k: list(v) for k, v in self.require.items()},
                "in_range": {k: list(v) for k, v in self.in_range.items()}}

    @classmethod
    def from_json(cls, data: dict) -> "Rule":
        return cls({k: tuple(v) for k, v in data["when"].items()}, data["message"],
                   {k: tuple(v) for k, v in data["require"].items()},
                   {k: tuple(v) for k, v in data["in_range"].items()})


def parse_options(options: tuple[Option, ...], rules: tuple[Rule, ...], given: dict[str, Any],
                  model: str = "") -> dict[str, Any]:
    """Every option's value (given or default), parsed and checked against the rules; ValueError
    names an unknown option with the valid ones."""
    known = {o.name: o for o in options}
    for name in given:
        if name not in known:
            valid = ", ".join(flag(o) for o in known if o != "data_range")
            raise ValueError(f"model '{model}' has no option {flag(name)}; its options: {valid}")
    values = {o.name: o.parse(given.get(o.name, o.default)) for o in options}
    for rule in rules:
        rule.check(values)
    return values


# -- the catalog -------------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelSpec:
    """A model class's declarations, readable without Keras."""

    name: str
    description: str
    options: tuple[Option, ...]
    rules: tuple[Rule, ...] = ()
    default_learning_rate: float = 1e-3
    family: str = "autoencoder"
    abilities: tuple[str, ...] = ()  # kgen.models.contract.Ability values: what the class may do

    def parse_options(self, given: dict[str, Any]) -> dict[str, Any]:
        """The model's options from ``given`` (user-settable ones only: not data_range)."""
        if "data_range" in given:
            parse_options((), (), {"data_range": None}, self.name)  # "no option --data-range"
        return parse_options(self.options, self.rules, given, self.name)

    def user_options(self) -> list[Option]:
        return [o for o in self.options if o.name != "data_range"]

    def can(self, ability: str) -> bool:
        """Whether the class may have ``ability`` (a value of kgen.models.contract.Ability)."""
        return ability in self.abilities

    @classmethod
    def of(cls, model_class) -> "ModelSpec":
        return cls(model_class.model_name, model_class.description, tuple(model_class.options),
                   tuple(model_class.rules), model_class.default_learning_rate, model_class.family,
                   tuple(sorted(a.value for a in model_class.abilities)))

    def to_json(self) -> dict:
        return {"name": self.name, "description": self.description, "options": [o.to_json() for o in self.options],
                "rules": [r.to_json() for r in self.rules], "default_learning_rate": self.default_learning_rate,
                "family": self.family, "abilities": list(self.abilities)}

    @classmethod
    def from_json(cls, data: dict) -> "ModelSpec":
        return cls(data["name"], data["description"], tuple(Option.from_json(o) for o in data["options"]),
                   tuple(Rule.from_json(r) for r in data["rules"]), data["default_learning_rate"], data["family"],
                   tuple(data["abilities"]))


def source_digest() -> str:
    """sha256 over the files the declarations come from (names and contents) and kgen's version."""
    digest = hashlib.sha256(kgen.__version__.encode())
    for entry in SOURCES:
        path = PACKAGE / entry
        for file in sorted(path.rglob("*.py")) if path.is_dir() else [path]:
            digest.update(str(file.relative_to(PACKAGE)).encode() + b"\0" + file.read_bytes() + b"\0")
    return digest.hexdigest()


def cache_dir() -> Path:
    """$KGEN_CACHE_DIR, else $XDG_CACHE_HOME/kgen, else ~/.cache/kgen."""
    if os.environ.get("KGEN_CACHE_DIR"):
        return Path(os.environ["KGEN_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "kgen"


_SPECS: dict[str, ModelSpec] | None = None


def specs() -> dict[str, ModelSpec]:
    """Every registered model's declarations, by name, in registration order."""
    global _SPECS
    if _SPECS is None:
        _SPECS = _read_cache() or _build_cache()
    return _SPECS


def get_spec(name: str) -> ModelSpec:
    known = specs()
    if name not in known:
        raise ValueError(f"unknown model '{name}'; choose one of: {', '.join(known)}")
    return known[name]


def _cache_file() -> Path:
    return cache_dir() / f"models-{source_digest()[:24]}.json"


def _read_cache() -> dict[str, ModelSpec] | None:
    try:
        data = json.loads(_cache_file().read_text())
        return {name: ModelSpec.from_json(spec) for name, spec in data.items()}
    except (OSError, ValueError, KeyError, TypeError):
        return None  # missing, stale or damaged: rebuilt from the classes


def _build_cache() -> dict[str, ModelSpec]:
    from kgen.models import MODELS  # deliberately lazy: this import is the seconds the cache saves

    built = {name: ModelSpec.of(cls) for name, cls in MODELS.items()}
    path = _cache_file()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        for stale in path.parent.glob("models-*.json"):  # catalogs of earlier sources
            stale.unlink(missing_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".models-", suffix=".json")
        with os.fdopen(fd, "w") as f:
            json.dump({name: spec.to_json() for name, spec in built.items()}, f)
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only home: the next command builds it again
    return built
