"""Search spaces: each model's default (``search_space`` in its file), ``--space`` files, KerasTuner
declarations.

A space maps option names (a model's options, plus ``learning_rate``) to a ``Range`` (numbers,
linear or log), a ``Choice`` (listed values) or a ``Fixed`` value (``kgen.space``). A ``--space``
file (YAML or JSON) uses the same shapes, in file form:

    beta: {min: 0.25, max: 4, sampling: log}     # Range
    latent_dim: [2, 8, 16]                        # Choice (or {values: [2, 8, 16]})
    hidden: 64                                    # Fixed
    d_steps: null                                 # not searched: the model's default
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import keras_tuner

from kgen.catalog import Option
from kgen.models import get_model_class
from kgen.space import (LEARNING_RATE, ByArch, Choice, Fixed, Range, Spec, SpaceError, check_spec, log_range,
                        parse_spec)

def searchable_options(model: str) -> dict[str, Option]:
    """The options a space may name: the model's (less the data scaling) and the learning rate."""
    options = {o.name: o for o in get_model_class(model).options if o.name != "data_range"}
    return {**options, "learning_rate": LEARNING_RATE}


def default_space(model: str) -> dict[str, Range | Choice | Fixed | ByArch]:
    """The model's declared ``search_space``, with the learning rate a decade either side of its default."""
    cls = get_model_class(model)
    rate = cls.default_learning_rate
    return {"learning_rate": log_range(rate / 10, rate * 10), **cls.search_space}


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


