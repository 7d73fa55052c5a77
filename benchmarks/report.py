"""Markdown tables from a `benchmarks/bench.py` JSON, and the Speed page's tables rewritten from it.

    python benchmarks/report.py benchmarks/results/bench.json                   # print the tables
    python benchmarks/report.py benchmarks/results/bench.json --docs docs/speed.md

A page's generated parts sit between markers, one pair per section::

    <!-- bench:vae -->
    ... (rewritten) ...
    <!-- /bench:vae -->

Sections: ``machine`` (where and how it was measured), one per suite (``vae``, ``ae-family``, ``gan``,
``aae``) and ``precision`` (the fastest backend and precision against keras-io in float32). Only the
sections the JSON has are rewritten; everything outside the markers, and the sections of suites the
run did not measure, are left as they are. ``--prefix P`` writes the markers ``bench:P-NAME`` instead:
a page that shows runs of two machines keeps one set of sections per machine, each with its own JSON::

    python benchmarks/report.py benchmarks/results/bench-avx512bf16.json --docs docs/speed.md --prefix avx512bf16
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness

PRECISION_TARGET = 1.3  # fastest backend and precision / keras-io float32, conv VAE and DCGAN
PRECISION_MODELS = (("vae", "vae_conv"), ("gan", "dcgan"))
DAGGER = "† the ratio of two medians measured in separate runs (not paired round by round)."
IMPLEMENTATION_WORDS = {"keras": "the same networks' hand-written Keras train_step on TensorFlow",
                        "keras-io": "keras-io's loop as published (TensorFlow)"}


def _n(value) -> str:
    return "-" if value is None else f"{value:,.0f}"


def _r(ratio: dict | None) -> str:
    if not ratio:
        return "-"
    return f"{ratio['median']:.2f}×" + ("†" if ratio.get("from_medians") else "")


def _rounds(ratio: dict | None) -> str:
    return "-" if not ratio else " ".join(f"{r:.2f}" for r in ratio["ratios"])


def verdict(ratio: dict | None) -> str:
    """The same-framework bar (kgen / Keras >= 1.0 within noise): ``>= 1`` when the median of the per-round
    ratios reaches it, ``noise`` when the median is below but some round reached it (the rounds' spread
    covers 1.0), ``below`` when every round was under it."""
    if not ratio or not ratio.get("ratios"):
        return "-"
    if ratio["median"] >= 1.0:
        return ">= 1"
    if len(ratio["ratios"]) < 2:
        return "< 1 (one round: no spread)"
    return "noise" if max(ratio["ratios"]) >= 1.0 else "**below**"


def _warmup(settings: dict) -> str:
    warmup = settings.get("warmup")
    if isinstance(warmup, dict):  # {"*" or suite: steps}
        return ", ".join(f"{'every suite' if k == '*' else k} {v}" for k, v in warmup.items()) or "each suite's own"
    return "each suite's own" if warmup is None else str(warmup)


def _precision_models(settings: dict) -> str:
    models = settings.get("precision_models")
    return f" (precisions other than float32: {' '.join(models)} only)" if models else ""


def _load(machine: dict) -> str:
    load = [x for x in machine.get("load_average_per_round", []) if x is not None]
    return ", ".join(f"{x:.2f}" for x in load) if load else "not recorded"


def _backend(row: dict) -> str:
    return row["backend"] + {None: "", True: " (jit)", False: " (no jit)"}[row["jit"]]


def _flags(machine: dict) -> str:
    present = [flag for flag, has in machine["flags"].items() if has]
    absent = [flag for flag, has in machine["flags"].items() if not has]
    return (" ".join(present) or "none of note") + (f" (absent: {' '.join(absent)})" if absent else "")


def provenance(result: dict, suite: str | None = None) -> str:
    """One line: when, where, how many steps and rounds (the machine section has the rest). A ``suite``
    of a merged result names the run that measured it, command included."""
    source = result["suites"].get(suite, {}).get("source") if suite else None
    machine, settings = (source["machine"], source["settings"]) if source else (result["machine"], result["settings"])
    steps = ", ".join(f"{name} {n}" for name, n in settings["steps"].items() if suite in (None, name))
    gpus = f"; GPU: {', '.join(machine['gpus'])}" if machine.get("gpus") and settings.get("device") == "gpu" else ""
    label = f" {settings['label']}." if settings.get("label") else ""
    command = f" Command: `{settings['command']}`." if settings.get("command") else ""
    suites = [suite] if suite else list(result["suites"])
    counts = [sum(v is not None for v in row["samples_per_s"]) for name in suites
              for row in result["suites"][name]["rows"]]
    measured = f"{min(counts)}–{max(counts)}" if counts and min(counts) != max(counts) else str(max(counts, default=0))
    return (f"_Measured {machine['date'][:16].replace('T', ' ')} UTC: {machine['cpu_model']}, "
            f"{machine['cores_available']} cores, numpy sgemm {machine['sgemm_gflops']:.0f} GFLOP/s{gpus}, load "
            f"average {_load(machine)}; timed steps {steps}; {measured} interleaved round(s) per row ({settings['rounds']} "
            f"planned), ratios are medians of the per-round ratios._{command}{label}")


def machine_section(result: dict) -> str:
    machine, settings = result["machine"], result["settings"]
    versions = ", ".join(f"{k} {v}" for k, v in machine["versions"].items())
    lines = [
        "| | |", "|---|---|",
        f"| CPU | {machine['cpu_model']} |",
        f"| cores | {machine['cores_available']} available of {machine['cores']} |",
        f"| flags | {_flags(machine)} |",
        (f"| numpy sgemm | {machine['sgemm_gflops']:.0f} GFLOP/s (per round: "
         f"{', '.join(f'{g:.0f}' for g in machine['sgemm_gflops_per_round'])}) |"),
        f"| GPUs | {', '.join(machine['gpus']) or 'none'} (device used: {settings.get('device', 'cpu')}) |",
        f"| versions | {versions} |",
        f"| load average (1 min, start of each round) | {_load(machine)} |",
        f"| date | {machine['date']} |",
        f"| command | `{settings.get('command') or 'not recorded'}` |",
        (f"| settings | suites {' '.join(settings['suites'])}; backends {' '.join(settings['backends'])}; precision "
         f"{' '.join(settings['precision'])}; batch {' '.join(map(str, settings['batch']))}; rounds "
         f"{settings['rounds']}; steps {', '.join(f'{k} {v}' for k, v in settings['steps'].items())}; warm-up "
         f"{_warmup(settings)}{_precision_models(settings)} |"),
    ]
    if settings.get("label"):
        lines.append(f"| note | {settings['label']} |")
    return "\n".join(lines)


def _find(rows: list, **match) -> dict | None:
    return next((r for r in rows if all(r[k] == v for k, v in match.items())), None)


def suite_section(result: dict, suite: str) -> str:
    data, sgemm = result["suites"][suite], result["machine"]["sgemm_gflops"]
    rows = data["rows"]
    mflop = data.get("mflop_per_sample")
    cross_backend, cross_impl = data["cross_reference"]
    header = ["model", "batch", "backend", "precision", "kgen samples/s", "Keras train_step samples/s",
              "**kgen / Keras**", "per-round ratios", "bar", "plain loop (float32)", "kgen / plain",
              "kgen / keras-io float32" if cross_impl == "keras-io" else "kgen / TF float32 reference"]
    has_plain = any(r["impl"] == "plain" for r in rows)  # the frameworks' own loops: columns only when measured
    if not has_plain:
        header = [h for h in header if h not in ("plain loop (float32)", "kgen / plain")]
    if mflop:
        header.insert(5, "kgen GFLOP/s (% of sgemm)")
    lines = [provenance(result, suite), "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        if row["impl"] != "kgen":
            continue
        match = {k: row[k] for k in ("model", "backend", "batch", "precision", "jit")}
        keras_row = _find(rows, impl="keras", **match)
        plain = _find(rows, impl="plain", model=row["model"], backend=row["backend"], batch=row["batch"])
        cells = [row["model"], str(row["batch"]), _backend(row), row["precision"], _n(row["median_samples_per_s"]),
                 _n(keras_row and keras_row["median_samples_per_s"]), f"**{_r(row.get('vs_keras'))}**",
                 _rounds(row.get("vs_keras")), verdict(row.get("vs_keras"))]
        if has_plain:
            cells += [_n(plain and plain["median_samples_per_s"]), _r(row.get("vs_plain"))]
        cells += [_r(row.get("vs_cross"))]
        if mflop:
            value = row["median_samples_per_s"]
            cells.insert(5, "-" if value is None else f"{value * mflop / 1e3:.1f} ({100 * value * mflop / 1e3 / sgemm:.0f}%)")
        lines.append("| " + " | ".join(cells) + " |")
    crosses = [r for r in rows if r["backend"] == cross_backend and r["impl"] == cross_impl
               and r["precision"] == "float32" and r["jit"] is None]
    if crosses:
        figures = ", ".join(f"{_n(r['median_samples_per_s'])} samples/s ({r['model']}, batch {r['batch']})"
                            for r in crosses)
        words = data.get("cross_reference_words") or IMPLEMENTATION_WORDS[cross_impl]
        lines += ["", f"Cross-backend float32 reference: {words}: {figures}."]
    if any((r.get("vs_cross") or {}).get("from_medians") for r in rows):
        lines += ["", DAGGER]
    if suite == "ae-family":
        lines += _contractive_lines(rows)
    skipped = sum(1 for r in rows for e in r.get("errors", []) if "skipped: past" in e)
    if skipped:
        lines += ["", (f"{skipped} measurement(s) of the later rounds were not taken: the run reached its time budget "
                      "(`--budget`); the per-round ratios show which rounds each row has.")]
    for row in rows:
        failures = [e for e in row.get("errors", []) if "skipped: past" not in e]
        if failures:
            first = failures[0].strip().splitlines()
            lines.append(f"\nFAILED {row['model']} {row['backend']} {row['impl']} {row['precision']} batch "
                         f"{row['batch']}: {first[-1] if first else '?'}")
    return "\n".join(lines)


def _contractive_lines(rows: list) -> list[str]:
    """The contractive penalty's cost: step time relative to kgen's plain shallow AE (same network)."""
    plain, exact, closed = "shallow_ae (no penalty)", "contractive_ae", "contractive_ae closed-form"
    out = []
    for base in (r for r in rows if r["impl"] == "kgen" and r["model"] == plain and r["median_samples_per_s"]):
        match = {k: base[k] for k in ("backend", "batch", "precision", "jit")}
        parts = []
        for name, label in ((exact, "autodiff"), (closed, "closed form")):
            other = _find(rows, impl="kgen", model=name, **match)
            if other and other["median_samples_per_s"]:
                parts.append(f"{label} {base['median_samples_per_s'] / other['median_samples_per_s']:.2f}×")
        if parts:
            out.append(f"- {_backend(base)}, {base['precision']}, batch {base['batch']}: " + ", ".join(parts))
    if out:
        out = ["", "Contractive penalty, step time relative to the plain shallow AE (the same 784-64-784 network):"] + out
    return out


def precision_section(result: dict) -> str | None:
    """The fastest backend and precision of kgen against keras-io in float32, for the conv VAE and DCGAN."""
    machine = result["machine"]
    lines, notes, failed = [], [], []

    def fastest(rows):
        return max(rows, key=lambda r: r["median_samples_per_s"]) if rows else None

    for suite, model in PRECISION_MODELS:
        rows = result["suites"].get(suite, {}).get("rows", [])
        failed += [r for r in rows if r["model"] == model and r["precision"] != "float32" and r["impl"] in ("kgen", "keras")
                   and not r["median_samples_per_s"]]
        kgen = [r for r in rows if r["impl"] == "kgen" and r["model"] == model and r["median_samples_per_s"]]
        for batch in sorted({r["batch"] for r in kgen}):
            here = [r for r in kgen if r["batch"] == batch]
            best = fastest(here)
            best_f32 = fastest([r for r in here if r["precision"] == "float32"])
            best_mixed = fastest([r for r in here if r["precision"] != "float32"])
            ratio = (best.get("vs_cross") or {}).get("median")
            verdict = "-" if ratio is None else ("met" if ratio >= PRECISION_TARGET else f"not met ({ratio:.2f}×)")

            def describe(row):
                return "-" if row is None else (f"{_backend(row)} {row['precision']}: {_n(row['median_samples_per_s'])}"
                                                f" ({_r(row.get('vs_cross'))})")

            lines.append(f"| {model} | {batch} | {_backend(best)}, {best['precision']} | "
                         f"{_n(best['median_samples_per_s'])} | {_r(best.get('vs_cross'))} | "
                         f"{PRECISION_TARGET:.1f}×: {verdict} | {describe(best_f32)} | {describe(best_mixed)} |")
            for impl in ("kgen", "keras"):  # mixed / float32 speed, kgen's and the Keras reference's
                pool = [r for r in rows if r["impl"] == impl and r["model"] == model and r["batch"] == batch
                        and r["median_samples_per_s"]]
                f32 = fastest([r for r in pool if r["precision"] == "float32"])
                mixed = fastest([r for r in pool if r["precision"] != "float32"])
                if f32 and mixed:
                    speed = mixed["median_samples_per_s"] / f32["median_samples_per_s"]
                    who = "kgen" if impl == "kgen" else "the Keras reference"
                    text = (f"{model} batch {batch}, {who}: {mixed['precision']} ({_backend(mixed)}) at "
                            f"{speed:.2f}× float32's speed ({_backend(f32)})")
                    notes.append((speed, text))
    if not lines:
        return None
    header = [("| model | batch | fastest kgen (backend, precision) | samples/s | vs keras-io float32 | target | "
               "best float32 (vs keras-io) | best mixed precision (vs keras-io) |"), "|" + "---|" * 8]
    text = [provenance(result), ""] + header + lines
    if any("†" in line for line in lines):
        text += ["", DAGGER]
    text += ["", explanation(machine, notes, result["settings"].get("device", "cpu"))]
    if failed:
        text += ["", "Mixed-precision rows that failed (see the suites' tables): " + ", ".join(
            f"{r['model']} {r['backend']} {r['impl']} {r['precision']} batch {r['batch']}" for r in failed) + "."]
    return "\n".join(text)


def explanation(machine: dict, notes: list[tuple[float, str]], device: str) -> str:
    """Why mixed precision helped or not, from the recorded flags (and GPUs); ``notes``: (mixed / float32
    speed, its description) per model, batch and implementation."""
    if not notes:
        return ("No kgen or Keras row ran in both float32 and a mixed precision: run with "
                "`--precision float32 mixed_bfloat16` to compare.")
    speed = "; ".join(text for _, text in notes)
    if device == "gpu" and machine.get("gpus"):
        return f"Mixed precision on {', '.join(machine['gpus'])}: {speed}."
    present = [f for f in harness.BF16_FLAGS if machine["flags"].get(f)]
    slower = all(ratio < 1.0 for ratio, _ in notes)
    if not present:
        outcome = ("Float32 stays the fastest precision here, and the ratio reached against keras-io is float32's."
                   if slower else "Where mixed precision came out ahead, it was not through bfloat16 arithmetic.")
        return (f"Mixed precision on this CPU: {speed}. Its recorded flags have none of "
                f"{', '.join(harness.BF16_FLAGS)}: no bfloat16 (or float16) arithmetic in hardware, so each "
                "low-precision matmul and convolution is computed by converting to float32 and back, with casts "
                f"at every layer's boundary on top. {outcome} A CPU with AMX-BF16 or AVX512-BF16, or a GPU "
                "(`benchmarks/gpu_check.sh`), is where mixed precision can pay.")
    return f"Mixed precision on this CPU ({', '.join(present)} present): {speed}."


def merge(results: list[dict]) -> dict:
    """One result from several runs (``gpu_check.sh``: one in-process run per backend): the rows put together
    (a later run's row replacing an earlier one of the same configuration), the machine and settings of the
    first run (backends, suites, commands united). A ratio to a row of another run
    cannot pair rounds: it is the ratio of the two medians, marked † in the tables."""
    if len(results) == 1:
        return results[0]
    first = results[0]
    merged = {"schema": first["schema"], "machine": dict(first["machine"]), "settings": dict(first["settings"]),
              "suites": {}}
    merged["machine"]["sgemm_gflops_per_round"] = [g for r in results for g in r["machine"]["sgemm_gflops_per_round"]]
    merged["machine"]["sgemm_gflops"] = max(merged["machine"]["sgemm_gflops_per_round"])
    for key in ("backends", "suites", "precision", "batch"):
        merged["settings"][key] = list(dict.fromkeys(x for r in results for x in r["settings"][key]))
    merged["settings"]["steps"] = {k: v for r in results for k, v in r["settings"]["steps"].items()}
    merged["settings"]["command"] = " ; ".join(dict.fromkeys(r["settings"].get("command") or "?" for r in results))
    merged["settings"]["rounds"] = "/".join(str(n) for n in dict.fromkeys(r["settings"]["rounds"] for r in results))
    merged["machine"]["load_average_per_round"] = [x for r in results
                                                   for x in r["machine"].get("load_average_per_round", [])]
    def key(row):
        return tuple(row[k] for k in ("model", "backend", "impl", "precision", "batch", "jit"))

    for result in results:  # a later run's row replaces an earlier run's row of the same configuration
        for suite, data in result["suites"].items():
            target = merged["suites"].setdefault(suite, {**data, "rows": [], "sources": []})
            replaced = {key(row) for row in data["rows"]}
            target["rows"] = [row for row in target["rows"] if key(row) not in replaced] + data["rows"]
            target["sources"].append({"machine": result["machine"], "settings": result["settings"]})
    for data in merged["suites"].values():  # a suite measured by one run keeps that run's provenance line
        sources = data.pop("sources")
        if len(sources) == 1:
            data["source"] = sources[0]
    for data in merged["suites"].values():
        cross_backend, cross_impl = data["cross_reference"]
        for row in data["rows"]:
            if row.get("vs_cross") or row["median_samples_per_s"] is None or (
                    row["backend"], row["impl"], row["precision"], row["jit"]) == (cross_backend, cross_impl,
                                                                                   "float32", None):
                continue
            cross = _find(data["rows"], model=row["model"], batch=row["batch"], backend=cross_backend,
                          impl=cross_impl, precision="float32", jit=None)
            if cross and cross["median_samples_per_s"]:
                row["vs_cross"] = {"ratios": [], "median": row["median_samples_per_s"] / cross["median_samples_per_s"],
                                   "from_medians": True}
    return merged


def sections(result: dict) -> dict[str, str]:
    """{marker name: Markdown} for everything the JSON holds."""
    out = {"machine": machine_section(result)}
    for suite in result["suites"]:
        out[suite] = suite_section(result, suite)
    precision = precision_section(result)
    if precision:
        out["precision"] = precision
    return out


def markdown(result: dict) -> str:
    """The whole report (bench.md)."""
    parts = ["# kgen benchmarks", "", ("kgen's phased core (`model.fit`) against the same networks' hand-written "
             "Keras train_step on the same backend (**kgen / Keras**: the bar is 1.0×, the median of per-round "
             "ratios), the framework's own loop (for information) and keras-io in float32 on TensorFlow."), "",
             "## Machine", "", machine_section(result)]
    for suite, data in result["suites"].items():
        parts += ["", f"## {data['title']}", "", data["description"] + ".", "", suite_section(result, suite)]
    precision = precision_section(result)
    if precision:
        parts += ["", "## Fastest backend and precision vs keras-io float32", "", precision]
    return "\n".join(parts) + "\n"


def rewrite(path: Path, new: dict[str, str]) -> list[str]:
    """Replace the text between ``<!-- bench:NAME -->`` and ``<!-- /bench:NAME -->`` for every NAME in ``new``
    that the file marks; return the names replaced."""
    text = Path(path).read_text()
    done = []
    for name, body in new.items():
        marker = re.escape(name)
        pattern = re.compile(rf"(<!-- bench:{marker} -->\n)(.*?)(<!-- /bench:{marker} -->)", re.DOTALL)
        text, count = pattern.subn(lambda m, body=body: m.group(1) + body.rstrip("\n") + "\n" + m.group(3), text)
        if count:
            done.append(name)
    Path(path).write_text(text)
    return done


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("json", nargs="+", help="a bench.py result (several: merged, see merge())")
    parser.add_argument("--markdown", default=None, help="write the whole report here")
    parser.add_argument("--docs", default=None, help="rewrite the marked sections of this Markdown file")
    parser.add_argument("--prefix", default=None, help="the sections' markers are bench:PREFIX-NAME (another machine's set)")
    args = parser.parse_args(argv)
    result = merge([json.loads(Path(path).read_text()) for path in args.json])
    if args.markdown:
        Path(args.markdown).write_text(markdown(result))
    if args.docs:
        new = sections(result)
        if args.prefix:
            new = {f"{args.prefix}-{name}": body for name, body in new.items()}
        done = rewrite(Path(args.docs), new)
        print(f"{args.docs}: rewrote {', '.join(done) or 'nothing (no markers)'}", file=sys.stderr)
    if not (args.markdown or args.docs):
        print(markdown(result))


if __name__ == "__main__":
    main()
