"""`make bench`: kgen's phased core against the same networks' hand-written Keras train_step, every suite.

Suites (each a module of this folder):

  vae        train_throughput.py  the keras-io conv VAE (+ keras-io as published, the cross-backend reference)
  ae-family  ae_family.py         the autoencoder family and the RBM
  gan        gan.py               DCGAN and WGAN-GP (their D and G phases)
  aae        aae.py               the unsupervised and the semi-supervised adversarial autoencoder

For every model, backend, precision, batch size (and jit setting) a round measures, back to back (one
Keras backend per process: by default one persistent worker per backend, Keras's state cleared and
garbage collected before each measurement, ``--processes fresh`` for a new process each time; the
timed window excludes start-up and compilation), kgen through ``model.fit`` and the same networks as a
Keras model with a hand-written train_step on that backend (``reference.py``: the bar, kgen / keras
>= 1.0); the order of the two alternates from round to round. Each round also measures the frameworks' own loops (float32, for
information) and the cross-backend float32 reference on TensorFlow: keras-io's VAE as published (vae),
keras-io's GAN train_step under Keras's default compile (gan), the TensorFlow row of the Keras reference
(ae-family, aae). A ratio is the median over rounds of the per-round ratios. numpy's
sgemm and the load average are measured at the start of every round; the machine (CPU, flags, versions,
date) and the command line are recorded.

    python benchmarks/bench.py                                     # every suite, defaults below
    python benchmarks/bench.py --suites vae gan --only vae_conv dcgan --precision float32 mixed_bfloat16 \\
        --batch 128 512 --rounds 3                                 # the precision table's rows
    python benchmarks/bench.py --suites ae-family --only ae --backends jax --steps 4 --warmup 2 --rounds 1 \\
        --label "quick check"                                      # a quick run
    python benchmarks/bench.py --suites vae gan ae-family --steps vae=60 gan=32 --warmup gan=16 \
        --precision float32 mixed_bfloat16 --precision-models vae_conv dcgan   # per-suite steps; mixed: 2 models

Writes ``--out``/bench.json (every measurement, per round) and ``--out``/bench.md (the tables,
``report.py``), and prints the Markdown. ``python benchmarks/report.py <json> --docs docs/speed.md``
rewrites the marked tables of the Speed page from such a file.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness

BACKENDS = ("tensorflow", "jax", "torch")
IMPLEMENTATIONS = ("kgen", "keras", "plain", "keras-io")
JIT = {"default": None, "on": True, "off": False}
HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Suite:
    module: str
    title: str
    steps: int  # default timed steps per measurement (kgen's 32 steps per execution must divide them)
    description: str
    cross: tuple  # (backend, implementation) of the cross-backend float32 reference
    cross_words: str  # what that reference is, for the tables


SUITES = {
    "vae": Suite("train_throughput", "conv VAE (keras-io)", 60,
                 "the keras-io conv VAE (28x28x1, conv 32/64, Dense 16, 2-D latent), samples/s = images/s",
                 ("tensorflow", "keras-io"), "keras-io's VAE as published (TensorFlow, Keras's default compile)"),
    "ae-family": Suite("ae_family", "autoencoder family and RBM", 320,
                       "dense autoencoders and the RBM (28x28 inputs, Adam 1e-3), samples/s = images/s",
                       ("tensorflow", "keras"), "the same networks' hand-written Keras train_step on TensorFlow"),
    "gan": Suite("gan", "GANs", 64,
                 "DCGAN (1 D step per batch) and WGAN-GP (5 critic steps), latent 100, width 64; samples/s = real "
                 "images consumed per second", ("tensorflow", "keras-io"),
                 "keras-io's GAN train_step (a GradientTape per player) on TensorFlow with Keras's default compile"),
    "aae": Suite("aae", "adversarial autoencoders", 128,
                 "AAE, dense 784-512-8, code discriminator 512-256-1 (semi-supervised: label head, category "
                 "discriminator, classification phase); samples/s = images/s", ("tensorflow", "keras"),
                 "the same networks' hand-written Keras train_step on TensorFlow"),
}


@dataclass(frozen=True)
class Run:
    suite: str
    model: str
    backend: str
    impl: str
    precision: str
    batch: int
    jit: bool | None

    @property
    def key(self) -> str:
        jit = {None: "", True: "/jit", False: "/nojit"}[self.jit]
        return f"{self.suite}/{self.model}/{self.backend}/{self.impl}/{self.precision}/{self.batch}{jit}"


def module(suite: str):
    return importlib.import_module(SUITES[suite].module)


def plan(suite: str, args) -> list[list[Run]]:
    """The runs of one round, in groups measured back to back: [kgen, keras] per configuration, then the
    frameworks' own loops and the cross-backend reference."""
    mod, info = module(suite), SUITES[suite]
    models = [m for m in (args.only or mod.MODELS) if m in mod.MODELS]
    groups = []
    for batch in args.batch:
        for model in models:
            for backend in args.backends:
                for precision in args.precision:
                    if precision != "float32" and args.precision_models and model not in args.precision_models:
                        continue
                    for jit in args.jit:
                        group = [Run(suite, model, backend, impl, precision, batch, JIT[jit]) for impl in ("kgen", "keras")
                                 if impl in args.impls and (impl == "kgen" or mod.has_reference(model))]
                        if group:
                            groups.append(group)
                plain_here = backend in mod.PLAIN and not (args.device == "gpu" and backend == "torch")
                if "plain" in args.impls and plain_here and mod.has_reference(model):
                    groups.append([Run(suite, model, backend, "plain", "float32", batch, None)])
            cross_backend, cross_impl = info.cross
            cross = Run(suite, model, cross_backend, cross_impl, "float32", batch, None)
            if (cross_impl in args.impls and cross_backend in args.backends and mod.has_reference(model)
                    and not any(cross in g for g in groups)):
                groups.append([cross])
    return groups


def steps_of(args, suite: str) -> int:
    """Timed steps per measurement of ``suite``: ``--steps`` (one number, or SUITE=N), else the suite's default."""
    return args.steps.get(suite, args.steps.get("*", SUITES[suite].steps))


def parse_steps(values: list[str] | None) -> dict:
    """``--steps 64`` -> {"*": 64}; ``--steps vae=60 gan=32`` -> {"vae": 60, "gan": 32}."""
    steps = {}
    for value in values or []:
        suite, _, count = value.rpartition("=")
        if suite and suite not in SUITES:
            raise ValueError(f"--steps {value}: no suite {suite!r} ({', '.join(SUITES)})")
        if not count.isdigit() or int(count) < 1:
            raise ValueError(f"--steps {value}: a step count >= 1 (or SUITE=N)")
        steps[suite or "*"] = int(count)
    return steps


def measure(run: Run, steps: int, args, workers=None) -> float:
    warmup = args.warmup.get(run.suite, args.warmup.get("*"))  # None: the suite's own
    settings = {"batch": run.batch, "precision": run.precision, "warmup": warmup, "device": args.device}
    call = (SUITES[run.suite].module, run.impl, run.model, steps, run.jit)
    if args.in_process:
        return harness.measure_here(*call, settings=settings)
    if workers is not None:
        return workers.measure(run.backend, *call, settings=settings, timeout=args.timeout)
    return harness.measure(run.backend, *call, settings=settings, timeout=args.timeout)


def measure_all(args, checkpoint=None) -> tuple[dict, list[float]]:
    """Every suite's runs, interleaved round by round: ({run: [samples/s or None per round]}, sgemm per round).
    ``checkpoint(measured, sgemm)`` is called after every measurement (the results so far survive a kill);
    past ``args.budget`` seconds the remaining measurements are skipped (recorded as such)."""
    rounds_plan = {suite: plan(suite, args) for suite in args.suites}
    values: dict[Run, list] = {}
    errors: dict[Run, list] = {}
    measured = {"values": values, "errors": errors}
    sgemm = []
    measured["load"] = load = []  # the 1-minute load average at the start of each round (other work on the machine)
    began = time.perf_counter()
    workers = harness.Workers(args.device) if args.processes == "persistent" and not args.in_process else None
    try:
        _rounds(args, rounds_plan, measured, sgemm, load, began, workers, checkpoint)
    finally:
        if workers is not None:
            workers.close()
    return measured, sgemm


def _rounds(args, rounds_plan, measured, sgemm, load, began, workers, checkpoint) -> None:
    values, errors = measured["values"], measured["errors"]
    for r in range(args.rounds):
        if not (args.budget and time.perf_counter() - began > args.budget):  # a round past the budget measures nothing
            load.append(harness.load_average())
            sgemm.append(harness.sgemm_gflops())
            print(f"round {r + 1}/{args.rounds}: numpy sgemm {sgemm[-1]:.0f} GFLOP/s, load average {load[-1]}",
                  file=sys.stderr)
        for suite, groups in rounds_plan.items():
            steps = steps_of(args, suite)
            for group in groups:
                for run in (group if r % 2 == 0 else group[::-1]):  # kgen first, then the reference first, ...
                    start = time.perf_counter()
                    if args.budget and start - began > args.budget:
                        value = None
                        errors.setdefault(run, []).append(f"round {r + 1}: skipped: past the {args.budget} s budget")
                    else:
                        try:
                            value = measure(run, steps, args, workers)
                        except Exception as error:  # noqa: BLE001 - one failed row must not lose the run
                            value = None
                            errors.setdefault(run, []).append(f"round {r + 1}: {str(error).strip()[-2000:]}")
                    values.setdefault(run, []).append(value)
                    if checkpoint:
                        checkpoint(measured, sgemm)
                    shown = f"{value:10.0f} samples/s" if value is not None else "    FAILED"
                    print(f"round {r + 1}: {run.key:64s} {shown} ({time.perf_counter() - start:.0f} s)",
                          file=sys.stderr)


def _ratio(values: list, references: list | None) -> dict | None:
    if not references:
        return None
    pairs = [(v, r) for v, r in zip(values, references) if v is not None and r is not None]
    if not pairs:
        return None
    return harness.median_ratio([v for v, _ in pairs], [r for _, r in pairs])


def _median(values: list) -> float | None:
    import statistics

    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def rows(measured: dict) -> dict:
    """{suite: [row]}: each run's per-round samples/s, their median, and its ratios (median of per-round
    ratios) against the same-framework reference, the framework's own loop and the cross-backend reference."""
    values, errors = measured["values"], measured["errors"]

    def find(run: Run, **changes):
        return values.get(Run(**{**run.__dict__, **changes}))

    out: dict[str, list] = {}
    for run, series in values.items():
        row = {"model": run.model, "backend": run.backend, "impl": run.impl, "precision": run.precision,
               "batch": run.batch, "jit": run.jit, "samples_per_s": series, "median_samples_per_s": _median(series)}
        if run in errors:
            row["errors"] = errors[run]
        if run.impl == "kgen":
            row["vs_keras"] = _ratio(series, find(run, impl="keras"))
            row["vs_plain"] = _ratio(series, find(run, impl="plain", precision="float32", jit=None))
        cross_backend, cross_impl = SUITES[run.suite].cross
        cross = Run(run.suite, run.model, cross_backend, cross_impl, "float32", run.batch, None)
        if run != cross:
            row["vs_cross"] = _ratio(series, values.get(cross))
        out.setdefault(run.suite, []).append(row)
    return out


def parse(argv=None, default_suites=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suites", "--suite", nargs="+", choices=tuple(SUITES), default=default_suites or list(SUITES))
    parser.add_argument("--only", nargs="+", default=None, help="models to run (of the chosen suites)")
    parser.add_argument("--backends", nargs="+", choices=BACKENDS, default=list(BACKENDS))
    parser.add_argument("--impls", nargs="+", choices=IMPLEMENTATIONS, default=list(IMPLEMENTATIONS),
                        help="implementations: kgen, keras (the same-framework bar), plain (the framework's own loop, "
                             "for information), keras-io (the VAE's cross-backend reference)")
    parser.add_argument("--precision", nargs="+", choices=harness.PRECISIONS, default=["float32"],
                        help="dtype policies of kgen's rows and of the Keras references (plain loops and keras-io "
                             "stay float32)")
    parser.add_argument("--batch", nargs="+", type=int, default=[128])
    parser.add_argument("--jit", nargs="+", choices=tuple(JIT), default=["default"],
                        help="kgen's jit_compile (and the Keras reference's): default = kgen train's for the backend")
    parser.add_argument("--steps", nargs="+", default=None, metavar="N|SUITE=N",
                        help="timed steps per measurement, for every suite or per suite (default: "
                        + ", ".join(f"{name}={s.steps}" for name, s in SUITES.items()) + ")")
    parser.add_argument("--warmup", nargs="+", default=None, metavar="N|SUITE=N",
                        help="steps before timing, for every suite or per suite (default: the suite's own)")
    parser.add_argument("--precision-models", nargs="+", default=None, metavar="MODEL",
                        help="only these models run the precisions other than float32 (default: every model)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", choices=harness.DEVICES, default="cpu",
                        help="cpu hides GPUs from the workers; gpu lets each framework take its GPU")
    parser.add_argument("--processes", choices=("persistent", "fresh"), default="persistent",
                        help="persistent: one long-lived worker per backend, Keras's state cleared between "
                             "measurements; fresh: a new process per measurement (slower: start-up each time)")
    parser.add_argument("--in-process", action="store_true",
                        help="measure in this process (one backend: KERAS_BACKEND's); quick runs and tests")
    parser.add_argument("--timeout", type=int, default=1200, help="seconds per measurement")
    parser.add_argument("--budget", type=int, default=None,
                        help="seconds for the whole run: measurements that would start later are skipped")
    parser.add_argument("--label", default="", help="a note stored with the results (e.g. 'loaded machine')")
    parser.add_argument("--out", default=str(HERE / "results"), help="folder of bench.json and bench.md")
    parser.add_argument("--json", default=None, help="the JSON file (default: OUT/bench.json)")
    parser.add_argument("--markdown", default=None, help="the Markdown file (default: OUT/bench.md)")
    args = parser.parse_args(argv)
    args.command = "python benchmarks/bench.py" + (" " + shlex.join(sys.argv[1:] if argv is None else argv)
                                                   if (sys.argv[1:] if argv is None else argv) else "")
    try:
        args.steps = parse_steps(args.steps)
        args.warmup = parse_steps(args.warmup)
    except ValueError as error:
        parser.error(str(error).replace("--steps", "--steps/--warmup"))
    if args.only:
        known = {m for suite in args.suites for m in module(suite).MODELS}
        if set(args.only) - known:
            parser.error(f"--only: {', '.join(sorted(set(args.only) - known))} not in the suites' models "
                         f"({', '.join(sorted(known))})")
    if args.in_process:
        here = os.environ.get("KERAS_BACKEND", "tensorflow")
        if args.backends != [here]:
            parser.error(f"--in-process measures on this process's backend only: --backends {here}")
    return args


def run(args, checkpoint=None) -> dict:
    """Measure, and the result: {"schema", "machine", "settings", "suites": {suite: {..., "rows": [...]}}}."""
    def partial(measured, sgemm):
        checkpoint({**result_of(args, measured, sgemm), "partial": True})

    measured, sgemm = measure_all(args, partial if checkpoint else None)
    return result_of(args, measured, sgemm)


def result_of(args, measured: dict, sgemm: list) -> dict:
    settings = {key: getattr(args, key) for key in ("suites", "only", "backends", "impls", "precision", "batch", "jit",
                                                    "warmup", "precision_models", "rounds", "device", "processes",
                                                    "in_process", "label", "command")}
    settings["steps"] = {suite: steps_of(args, suite) for suite in args.suites}
    suites = {}
    for suite, suite_rows in rows(measured).items():
        info = SUITES[suite]
        suites[suite] = {"title": info.title, "description": info.description, "cross_reference": list(info.cross),
                         "cross_reference_words": info.cross_words, "rows": suite_rows}
        if suite == "vae":
            suites[suite]["mflop_per_sample"] = module(suite).train_flops_per_sample() / 1e6
    machine = harness.machine_record(sgemm)
    machine["load_average_per_round"] = list(measured.get("load", []))
    return {"schema": 1, "machine": machine, "settings": settings, "suites": suites}


def main(argv=None, default_suites=None) -> dict:
    import report

    args = parse(argv, default_suites)
    json_path = Path(args.json or Path(args.out) / "bench.json")
    md_path = Path(args.markdown or Path(args.out) / "bench.md")
    json_path.parent.mkdir(parents=True, exist_ok=True)
    md_path.parent.mkdir(parents=True, exist_ok=True)
    partial_path = json_path.with_suffix(".partial.json")  # the measurements so far, should the run be killed
    result = run(args, lambda so_far: partial_path.write_text(json.dumps(so_far, indent=2) + "\n"))
    json_path.write_text(json.dumps(result, indent=2) + "\n")
    partial_path.unlink(missing_ok=True)
    text = report.markdown(result)
    md_path.write_text(text)
    print(text)
    print(f"wrote {json_path} and {md_path}", file=sys.stderr)
    return result


if __name__ == "__main__":
    main()
