"""Search-space shapes, written where a model declares its default space (``search_space`` in its
file) and in ``--space`` files; checked without Keras or KerasTuner (``kgen.tuning.spaces`` turns
them into KerasTuner hyperparameters).

    Range(low, high[, step][, sampling])   numbers, linear or log      {min, max[, step][, sampling]}
    Choice(v1, v2, ...)                    one of the values           [v1, v2, ...] or {values: [...]}
    Fixed(value)                           not searched                value
    ByArch(dense=..., conv=...)            a width per network type    (models only)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kgen.catalog import Option

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


# Widths shared by the autoencoders' and the GANs' spaces.
AE_WIDTH = ByArch(dense=Choice(256, 512, 1024), conv=Choice(8, 16, 32))
GAN_WIDTH = ByArch(dense=Choice(128, 256, 512), conv=Choice(32, 64, 128))
Spec = Range | Choice | Fixed


class SpaceError(ValueError):
    """A malformed search space; the message names the file and the entry."""


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


