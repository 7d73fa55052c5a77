"""MkDocs hook: the models page's tables, written at build time from the models' own declarations.

docs/models.md holds the hand-written prose and two kinds of marker, which this hook replaces:

    <!-- kgen:model-index -->        a table of every model: name, family, description
    <!-- kgen:models FAMILY -->      for each model of FAMILY (autoencoder, rbm, gan, aae, classifier):
                                     name, description, family, abilities, default learning rate,
                                     options (type, choices or range, default, help) and rules

The declarations come from ``kgen.catalog.specs()``: the same catalog `kgen list` and
`kgen train MODEL --help` print, read from the checked-out tree (not an installed kgen), so the page
cannot drift from the code. The build fails (a PluginError) when a model's family has no marker, a
marker names no family, or a model declares an ability the page's glossary does not explain.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

from mkdocs.exceptions import PluginError

PAGE = "models.md"
INDEX = "<!-- kgen:model-index -->"
FAMILY = re.compile(r"<!-- kgen:models (\S+) -->")
CODE = re.compile(r"(`[^`|]+`)")
FORMS = {"positive_int_list": "comma-separated positive integers", "count_or_all": "a number, or `all`"}


def on_config(config):
    """Import kgen from this checkout, whatever is installed, without a backend's log lines."""
    root = str(Path(config.config_file_path).resolve().parent)
    if root not in sys.path:
        sys.path.insert(0, root)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    return config


def on_page_markdown(markdown, page, config, files):
    if page.file.src_uri != PAGE:
        return markdown
    from kgen.catalog import specs

    models = specs()
    families = FAMILY.findall(markdown)
    unplaced = sorted({spec.family for spec in models.values()} - set(families))
    if unplaced:
        raise PluginError(f"docs/{PAGE} has no '<!-- kgen:models FAMILY -->' marker for: {', '.join(unplaced)}")
    unknown = sorted(set(families) - {spec.family for spec in models.values()})
    if unknown:
        raise PluginError(f"docs/{PAGE}: markers name families without models: {', '.join(unknown)}")
    unexplained = sorted({a for spec in models.values() for a in spec.abilities if f"| `{a}` |" not in markdown})
    if unexplained:
        raise PluginError(f"docs/{PAGE}: the abilities glossary lacks a row for: {', '.join(unexplained)}")
    markdown = markdown.replace(INDEX, model_index(models))
    return FAMILY.sub(lambda m: "\n\n".join(model_section(s) for s in models.values() if s.family == m.group(1)),
                      markdown)


# -- the markdown -------------------------------------------------------------------------------
def text(value) -> str:
    """Declared text as markdown (also in table cells): `code spans` stay code; elsewhere no
    emphasis, links, HTML or cell breaks."""
    parts = re.split(CODE, str(value))
    return "".join(part if CODE.fullmatch(part) else escape(part) for part in parts)


def escape(plain: str) -> str:
    out = plain.replace("\\", "\\\\")
    for char in "`*_[]|":
        out = out.replace(char, "\\" + char)
    return out.replace("<", "&lt;").replace(">", "&gt;")


def anchor(name: str) -> str:
    return "model-" + name.replace("_", "-")


def model_index(models) -> str:
    rows = [f"| [`{name}`](#{anchor(name)}) | {spec.family} | {text(spec.description)} |"
            for name, spec in models.items()]
    return "\n".join(["| model | family | what |", "|---|---|---|", *rows])


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def option_row(option) -> str:
    kind = option.type.__name__
    if option.type is bool:
        kind += f" (flag: `{flag(option.name)}`, `--no-{option.name.replace('_', '-')}`)"
    values = ["`true`, `false`"] if option.type is bool else []
    if option.choices:
        values.append(", ".join(f"`{choice}`" for choice in option.choices))
    if option.minimum is not None or option.maximum is not None:
        values.append(f"`{option.bounds()}`")
    if option.form:
        values.append(FORMS.get(option.form, text(option.form)))
    default = "auto" if option.default is None else f"`{str(option.default).lower() if option.type is bool else option.default}`"
    if option.default is None and option.from_data:
        default += f" (the dataset's `{option.from_data}`)"
    return f"| `{flag(option.name)}` | {kind} | {'; '.join(values) or 'any'} | {default} | {text(option.help)} |"


def model_section(spec) -> str:
    lines = [
        f"### `{spec.name}` {{ #{anchor(spec.name)} }}",
        "",
        text(spec.description),
        "",
        f"Family: {spec.family}. Abilities ([what they mean](#abilities)): "
        f"{', '.join(f'`{a}`' for a in spec.abilities) or 'none'}. "
        f"Default learning rate: {spec.default_learning_rate:g}.",
        "",
    ]
    options = spec.user_options()
    if options:
        lines += ["| option | type | values | default | what |", "|---|---|---|---|---|",
                  *map(option_row, options), ""]
    else:
        lines += ["No model options.", ""]
    if spec.rules:
        lines += ["Rules between the options (checked before anything is written):", "",
                  *(f"- `{rule.describe()}`" for rule in spec.rules), ""]
    return "\n".join(lines)
