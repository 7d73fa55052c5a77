"""Search spaces: a readable table of ranges per model, ``--space`` files, KerasTuner declarations.

A space maps option names (a model's options, plus ``learning_rate``) to a ``Range`` (numbers,
linear or log), a ``Choice`` (listed values) or a ``Fixed`` value. A ``--space`` file (YAML or
JSON) uses the same shapes, in file form:

    beta: {min: 0.25, max: 4, sampling: log}     # Range
    latent_dim: [2, 8, 16]                        # Choice (or {values: [2, 8, 16]})
    hidden: 64                                    # Fixed
    d_steps: null                                 # not searched: the model's default
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras_tuner

from kgen.models import get_model_class
from kgen.models.base import Option

SAMPLINGS = ("linear", "log")
LEARNING_RATE = Option("learning_rate", float, None, "learning rate of the model's optimizers")


@dataclass(frozen=True)
class Range:
    """Numbers from ``low`` to ``high`` (both included), every ``step`` or continuous; ``log``
    sampling spreads trials evenly over orders of magnitude. Integer options draw integers."""

    low: float
    high: float
    step: float | None = None
    sampling: str = "linear"


@dataclass(frozen=True)
class Choice:
    """One of the listed values."""

    values: tuple

    def __init__(self, *values):
        object.__setattr__(self, "values", tuple(values))


@dataclass(frozen=True)
class Fixed:
    """Not searched: every trial uses this value."""

    value: Any


@dataclass(frozen=True)
class ByArch:
    """A width whose sensible values depend on the network type (dense units vs conv filters)."""

    dense: Range | Choice
    conv: Range | Choice


def log_range(low: float, high: float) -> Range:
    return Range(low, high, sampling="log")


AE_WIDTH = ByArch(dense=Choice(256, 512, 1024), conv=Choice(8, 16, 32))
AE_SPACE = {"latent_dim": Choice(8, 16, 32, 64), "hidden": AE_WIDTH}
GAN_SPACE = {"latent_dim": Choice(32, 64, 100, 128), "width": ByArch(dense=Choice(128, 256, 512), conv=Choice(32, 64, 128)),
             "d_steps": Range(1, 3)}
WGAN_SPACE = {"latent_dim": GAN_SPACE["latent_dim"], "width": GAN_SPACE["width"], "n_critic": Range(2, 6)}

# Default search space per model, keyed by option name; every model also searches its learning
# rate over a log range of a decade either side of its default (``default_space``). A new model
# gets its space with one line here (options it lacks are a test failure, not silently dropped).
SPACES: dict[str, dict[str, Range | Choice | Fixed | ByArch]] = {
    "ae": AE_SPACE,
    "linear_ae": {"latent_dim": Choice(8, 16, 32)},
    "stacked_ae": {"widths": Choice("300,150", "500,250", "256,128,64")},
    "sparse_ae": {"latent_dim": Choice(64, 128, 256), "hidden": AE_WIDTH, "weight": log_range(1e-3, 1.0)},
    "denoising_ae": {**AE_SPACE, "noise_level": Range(0.1, 0.5, step=0.1)},
    "contractive_ae": {"latent_dim": Choice(32, 64, 128), "weight": log_range(1e-3, 1.0)},
    "vae": {"latent_dim": Choice(2, 8, 16, 32), "hidden": AE_WIDTH, "beta": log_range(0.25, 4.0)},
    "rbm": {"hidden": Choice(64, 128, 256, 512), "cd_steps": Range(1, 5)},
    "gan": GAN_SPACE,
    "dcgan": GAN_SPACE,
    "cgan": GAN_SPACE,
    "infogan": {**GAN_SPACE, "info_weight": log_range(0.5, 2.0)},
    "wgan": WGAN_SPACE,
    "wgan_gp": {**WGAN_SPACE, "gp_weight": log_range(2.0, 20.0)},
    "classifier": {"width": Choice(64, 128, 256)},
    # The prior's weight; latent_dim is left out: the mixture and swiss-roll priors are 2-D only.
    "aae": {"hidden": AE_WIDTH, "disc_width": Choice(128, 256, 512), "adversarial_weight": log_range(0.1, 10.0)},
}
Spec = Range | Choice | Fixed


class SpaceError(ValueError):
    """A malformed search space; the message names the file and the entry."""


def searchable_options(model: str) -> dict[str, Option]:
    """The options a space may name: the model's (less the data scaling) and the learning rate."""
    options = {o.name: o for o in get_model_class(model).options if o.name != "data_range"}
    return {**options, "learning_rate": LEARNING_RATE}


def default_space(model: str) -> dict[str, Range | Choice | Fixed | ByArch]:
    rate = get_model_class(model).default_learning_rate
    return {"learning_rate": log_range(rate / 10, rate * 10), **SPACES.get(model, {})}


def model_arch(model: str, model_options: dict) -> str | None:
    """The network type a model is built with: its --arch option, else the class's one architecture."""
    cls = get_model_class(model)
    options = {o.name: o for o in cls.options}
    if "arch" in model_options:
        return model_options["arch"]
    return options["arch"].default if "arch" in options else getattr(cls, "arch", None)


def search_space(model: str, fixed: dict[str, Any], overrides: dict[str, Any] | None = None,
                 source: str = "--space") -> dict[str, Spec]:
    """The space a search explores: ``default_space(model)`` with ``overrides`` (``--space`` entries:
    a spec, or None to drop an entry) applied; options ``fixed`` on the command line are not searched.

    A ``ByArch`` width is resolved for the model's network type; when ``arch`` itself is searched,
    such widths keep the model's per-architecture default unless the overrides give them.
    """
    options = searchable_options(model)
    space: dict[str, Any] = {k: v for k, v in default_space(model).items() if k not in fixed}
    for name, raw in (overrides or {}).items():
        if name not in options:
            raise SpaceError(f"{source}: model '{model}' has no option '{name}'; it has: {', '.join(options)}")
        if name in fixed:
            flag = "--" + name.replace("_", "-")
            raise SpaceError(f"{source}: '{name}' is fixed by {flag} on the command line; drop one of them")
        if raw is None:
            space.pop(name, None)
        else:
            space[name] = parse_spec(name, raw, options[name], source)
    arch = space.get("arch")
    searched_arch = isinstance(arch, Choice) and len(arch.values) > 1
    arch_value = arch.value if isinstance(arch, Fixed) else model_arch(model, fixed)
    for name, spec in list(space.items()):
        if isinstance(spec, ByArch):
            chosen = None if searched_arch else getattr(spec, arch_value or "", None)
            if chosen is None:
                del space[name]
            else:
                space[name] = chosen
    for name, spec in space.items():
        check_spec(name, spec, options[name], source)
    return space


def parse_spec(name: str, raw: Any, option: Option, source: str = "--space") -> Spec:
    """A space entry from its file form: ``{min, max[, step][, sampling]}``, a list (or
    ``{values: [...]}``) of choices, or a single value (fixed)."""
    where = f"{source}: '{name}'"
    if isinstance(raw, dict):
        keys = set(raw)
        if "values" in keys:
            if keys != {"values"}:
                raise SpaceError(f"{where}: 'values' takes no other keys, got {', '.join(sorted(keys - {'values'}))}")
            raw = raw["values"]
        else:
            unknown = keys - {"min", "max", "step", "sampling"}
            if unknown or not {"min", "max"} <= keys:
                raise SpaceError(f"{where}: a range is {{min, max[, step][, sampling]}}, got keys {', '.join(sorted(keys))}")
            if option.type not in (int, float):
                raise SpaceError(f"{where} is a {option.type.__name__} option: list its values instead of a range")
            try:
                low, high = float(raw["min"]), float(raw["max"])
                step = None if raw.get("step") is None else float(raw["step"])
            except (TypeError, ValueError):
                raise SpaceError(f"{where}: min, max and step must be numbers, got {raw}") from None
            return Range(low, high, step, str(raw.get("sampling", "linear")))
    if isinstance(raw, list):
        if not raw:
            raise SpaceError(f"{where}: the list of values is empty")
        return Choice(*(parse_value(where, v, option) for v in raw))
    return Fixed(parse_value(where, raw, option))


def parse_value(where: str, raw: Any, option: Option) -> Any:
    if isinstance(raw, (dict, list)) or raw is None:
        raise SpaceError(f"{where}: expected a {option.type.__name__} value, got {raw!r}")
    try:
        return option.parse(raw)
    except ValueError as exc:
        raise SpaceError(f"{where}: {exc}") from None


def check_spec(name: str, spec: Spec, option: Option, source: str = "--space") -> None:
    """Raise SpaceError when a range cannot be searched or leaves the option's valid values."""
    where = f"{source}: '{name}'"
    if isinstance(spec, Range):
        if spec.sampling not in SAMPLINGS:
            raise SpaceError(f"{where}: sampling must be one of {', '.join(SAMPLINGS)}, got {spec.sampling!r}")
        if not spec.low < spec.high:
            raise SpaceError(f"{where}: min must be < max, got {spec.low:g} and {spec.high:g}")
        if spec.step is not None and not spec.step > 0:
            raise SpaceError(f"{where}: step must be > 0, got {spec.step:g}")
        if spec.sampling == "log" and not spec.low > 0:
            raise SpaceError(f"{where}: log sampling needs min > 0, got {spec.low:g}")
        if option.type is int and not all(float(v).is_integer() for v in (spec.low, spec.high, spec.step or 1)):
            raise SpaceError(f"{where} is an integer option: min, max and step must be integers")
        values = (spec.low, spec.high)
    else:
        values = spec.values if isinstance(spec, Choice) else (spec.value,)
    for value in values:
        if option is LEARNING_RATE and not value > 0:
            raise SpaceError(f"{where}: the learning rate must be > 0, got {value:g}")
        try:
            option.parse(value)
        except ValueError as exc:
            raise SpaceError(f"{where}: {exc}") from None


def spec_to_json(spec: Spec) -> Any:
    """The file form of a spec (what ``parse_spec`` reads back)."""
    if isinstance(spec, Range):
        out: dict[str, Any] = {"min": spec.low, "max": spec.high}
        if spec.step is not None:
            out["step"] = spec.step
        if spec.sampling != "linear":
            out["sampling"] = spec.sampling
        return out
    return list(spec.values) if isinstance(spec, Choice) else spec.value


def read_space_file(path: str | Path) -> dict[str, Any]:
    """The entries of a ``--space`` file (.yaml/.yml or .json): a mapping of option name to spec."""
    path = Path(path)
    source = f"--space {path}"
    if path.suffix.lower() not in (".json", ".yaml", ".yml"):
        raise SpaceError(f"{source}: expected a .yaml, .yml or .json file")
    try:
        text = path.read_text()
    except OSError as exc:
        raise SpaceError(f"{source}: cannot read it ({exc.strerror or exc})") from None
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as exc:  # noqa: BLE001 - json and yaml parse errors become one line
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SpaceError(f"{source}: not valid {path.suffix[1:].upper()} ({first})") from None
    if not isinstance(data, dict) or not data:
        raise SpaceError(f"{source}: expected a mapping of option names to ranges, e.g. "
                         "'beta: {min: 0.5, max: 4, sampling: log}'")
    return {str(k): v for k, v in data.items()}


def declare(hp: keras_tuner.HyperParameters, name: str, spec: Spec, option: Option, default: Any = None) -> Any:
    """Register one space entry with KerasTuner and return its value for this trial. ``default``
    (the model's own value, when the space holds it) is what KerasTuner's first build uses."""
    if isinstance(spec, Fixed):
        return hp.Fixed(name, spec.value)
    if isinstance(spec, Choice):
        return hp.Choice(name, list(spec.values), default=default if default in spec.values else None)
    inside = default is not None and spec.low <= default <= spec.high
    if option.type is int:
        step = int(spec.step) if spec.step is not None else None
        return hp.Int(name, int(spec.low), int(spec.high), step=step, sampling=spec.sampling,
                      default=int(default) if inside and step is None else None)
    return hp.Float(name, spec.low, spec.high, step=spec.step, sampling=spec.sampling,
                    default=float(default) if inside and spec.step is None else None)


