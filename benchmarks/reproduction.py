"""The reproduction table: every model family trained and judged by its field's own metric, on the
4,500 offline MNIST digits and on Fashion-MNIST's 60,000 images, beside the literature's figure.

    python benchmarks/quality.py --all                   # every experiment on both datasets (hours on 2 cores)
    make quality                                         # the same (QUALITY_ARGS=... passes options)
    python benchmarks/quality.py --all --only vae rbm --datasets mnist-4.5k
    python benchmarks/quality.py --all --report-only --docs docs/reproduction.md

Each experiment runs the commands a user would: ``kgen train MODEL --dataset D ...`` then
``kgen evaluate RUN`` (with ``--classifier`` for the generators: the judge trained first on the same
data). Results go to ``--json`` (default benchmarks/results/quality.json) after every experiment, keyed
by (experiment, dataset): a rerun of some experiments replaces their cells and keeps the others, and a
killed run keeps what it finished. The table (``--docs``) is rewritten between the markers
``<!-- bench:reproduction -->`` and ``<!-- /bench:reproduction -->`` of docs/reproduction.md.

Training budgets: the model's own defaults where they are affordable on 2 cores (they are what a user
gets from ``kgen train MODEL --dataset D``); on Fashion-MNIST's 60,000 images the GANs and AAEs get a
shorter budget (``fashion`` options of the experiment), shown in the command column.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

# kgen(ARGS, backend): `kgen ARGS` in a fresh process on a backend; its wall seconds
from quality import AAE_RECIPE, kgen

DATASETS = {"mnist-4.5k": "mnist", "fashion-60k": "/usr/share/datasets/fashion-mnist"}
DEFAULT_JSON = ROOT / "benchmarks" / "results" / "quality.json"


@dataclass(frozen=True)
class Figure:
    """One row of the table: a metric of ``kgen evaluate`` (its metrics.json key) and the literature's value."""

    metric: str
    label: str
    literature: str
    standard_error: str | None = None  # the metric's standard-error key, printed as value ± se
    percent: bool = False  # an error rate printed in %


@dataclass(frozen=True)
class Experiment:
    key: str
    model: str
    figures: tuple[Figure, ...]
    train: tuple[str, ...] = ()  # options besides --dataset and --run-dir (the model's defaults otherwise)
    fashion: tuple[str, ...] | None = None  # the options on Fashion-MNIST, where they differ
    evaluate: tuple[str, ...] = ()
    judged: bool = False  # evaluated with --classifier (the judge experiment's run)
    extra: tuple[str, ...] = field(default=())  # metrics stored beside the figures (the JSON keeps them all)

    def options(self, dataset_key: str) -> tuple[str, ...]:
        return self.fashion if dataset_key.startswith("fashion") and self.fashion is not None else self.train


GAN_FIGURES = ("fid", "fid_real_floor", "precision", "recall", "classifier_score", "modes_covered")
# Best FID of a large hyperparameter search per model and dataset (as reprinted by Dai & Wipf 2019, Table 1).
LUCIC = "Lucic et al. 2018"

# The AAE rows: the paper's recipe as benchmarks/quality.py's aae table runs it (675 batches of 100 on the
# digits, the same on Fashion-MNIST), and the defaults (3,000 batches) for the Parzen estimate.
AAE_SEMI = ("--mode", "semi-supervised", *AAE_RECIPE)
AAE_CLUSTERING = ("--mode", "clustering", "--clusters", "16", "--latent-dim", "4", *AAE_RECIPE)
AAE_MNIST = ("--epochs", "15", "--batch-size", "100")
AAE_FASHION = ("--epochs", "2", "--steps-per-epoch", "338", "--batch-size", "100")

# "Defaults that work": what `kgen train MODEL --dataset D` gives with no other option, judged by the judge
# classifier: how recognisable the samples are (its classifier score and the classes it finds among them,
# Salimans et al. 2016) and, for autoencoders, its accuracy on their reconstructions of the test images.
SAMPLE_SCORE = Figure("classifier_score", "classifier score of samples, defaults", "10 = every class, confidently")
SAMPLE_CLASSES = Figure("modes_covered", "classes covered by samples, defaults", "10")
RECONSTRUCTION_ACCURACY = Figure("reconstruction_judge_accuracy", "judge's accuracy on test reconstructions, defaults",
                                 "the judge's accuracy on the images (its row)")


def autoencoder_defaults(model: str) -> Experiment:
    return Experiment(model, model, (RECONSTRUCTION_ACCURACY,), judged=True, extra=("judge_accuracy",))


def generator_defaults(model: str, *figures: Figure) -> Experiment:
    return Experiment(model, model, (SAMPLE_SCORE, SAMPLE_CLASSES, *figures,
                                     Figure("fid", "FID (judge features), defaults", "–")),
                      judged=True, extra=GAN_FIGURES)


# The judge of every generator (its features give FID/KID/precision/recall; its softmax the classifier score).
JUDGE = Experiment("classifier", "classifier", (
    Figure("accuracy", "test accuracy", "≈99% (keras-io's MNIST convnet, which the classifier follows; 60,000 digits)"),),
    train=("--epochs", "15"), fashion=("--epochs", "3"))

# The two models of issue 18's speed target, each also trained in mixed_bfloat16: a faster precision must
# not cost quality (compare each bf16 row with the float32 row above it).
DCGAN = Experiment("dcgan", "dcgan", (
    Figure("fid", "FID (judge features), defaults", f"NS GAN: MNIST 6.8 ± 0.5, Fashion 26.5 ± 1.6 ({LUCIC}; Inception features: not comparable)"),
    Figure("fid_real_floor", "FID floor: training vs test images, same n", "0 (real vs real)"),
    Figure("precision", "precision (k = 3)", "–"),
    Figure("recall", "recall (k = 3)", "–"),
), fashion=("--epochs", "2"), judged=True, extra=GAN_FIGURES)
VAE_CONV = Experiment("vae_conv", "vae", (
    Figure("negative_elbo", "−ELBO (nats), conv, 16-D latent", "–", "negative_elbo_se"),
    Figure("iwae_nll", "IWAE bound, K = 200 (nats), conv, 16-D latent", "–", "iwae_nll_se"),
), train=("--arch", "conv", "--latent-dim", "16", "--epochs", "30"),
    fashion=("--arch", "conv", "--latent-dim", "16", "--epochs", "3"))


def in_bfloat16(experiment: Experiment) -> Experiment:
    """The same cell trained with ``--precision mixed_bfloat16`` (variables float32, compute bfloat16)."""
    flag = ("--precision", "mixed_bfloat16")
    figures = tuple(replace(f, label=f"{f.label}, mixed_bfloat16", literature="the row above (float32)")
                    for f in experiment.figures if f.metric != "fid_real_floor")
    return replace(experiment, key=f"{experiment.key}_bf16", figures=figures, train=(*experiment.train, *flag),
                   fashion=None if experiment.fashion is None else (*experiment.fashion, *flag))


EXPERIMENTS = (
    JUDGE,
    Experiment("vae", "vae", (
        Figure("negative_elbo", "−ELBO (nats), defaults: 2-D latent", "–", "negative_elbo_se"),
        Figure("iwae_nll", "IWAE bound, K = 200 (nats), defaults", "–", "iwae_nll_se"),
        SAMPLE_SCORE,
        SAMPLE_CLASSES,
    ), judged=True),
    Experiment("vae16", "vae", (
        Figure("negative_elbo", "−ELBO (nats), 16-D latent", "–", "negative_elbo_se"),
        Figure("iwae_nll", "IWAE bound, K = 200 (nats), 16-D latent",
               "86.76 (Burda et al. 2016, Table 1: VAE, 50-D latent, two 200-unit tanh layers, 60,000 digits "
               "binarized by sampling, K = 5000, 3,280 passes); 89.78 ± 0.01 (pythae's reproducibility table: "
               "fixed-binarized MNIST, K = 200)", "iwae_nll_se"),
    ), train=("--latent-dim", "16", "--epochs", "30")),
    VAE_CONV,
    in_bfloat16(VAE_CONV),
    *(autoencoder_defaults(m) for m in ("ae", "stacked_ae", "sparse_ae", "denoising_ae", "contractive_ae",
                                        "linear_ae")),
    Experiment("tcvae", "tcvae", (RECONSTRUCTION_ACCURACY, SAMPLE_SCORE, SAMPLE_CLASSES), judged=True,
               extra=("judge_accuracy",)),
    Experiment("rbm", "rbm", (
        Figure("rbm_nll", "test NLL by AIS (nats), defaults: 256 hidden, CD-1",
               "−86.34 for 500 hidden units and CD-25 (Salakhutdinov & Murray 2008, 60,000 digits, 14,500 "
               "temperatures × 100 runs; the figure as quoted by others, not checked against the paper)",
               "rbm_nll_se"),
    ), evaluate=("--ais-temperatures", "14500", "--ais-runs", "100")),
    DCGAN,
    in_bfloat16(DCGAN),
    Experiment("wgan_gp", "wgan_gp", (
        Figure("fid", "FID (judge features), defaults", f"WGAN GP: MNIST 20.3 ± 5.0, Fashion 24.5 ± 2.1 ({LUCIC}; Inception features: not comparable)"),
    ), judged=True, extra=GAN_FIGURES),
    Experiment("infogan", "infogan", (
        Figure("code_error", "categorical code error (codes matched to labels)",
               "5% (Chen et al. 2016, section 7.2; MNIST)", percent=True),
        Figure("fid", "FID (judge features), defaults", "–"),
    ), fashion=("--epochs", "2"), judged=True, extra=GAN_FIGURES),
    generator_defaults("gan"),
    generator_defaults("cgan", Figure("label_accuracy", "samples the judge gives the label asked for, defaults", "–")),
    generator_defaults("lsgan"),
    generator_defaults("wgan"),
    Experiment("aae_semi100", "aae", (
        Figure("error_rate", "semi-supervised test error, 100 labels", "1.90% ± 0.10 (Makhzani et al. 2016, 60,000 digits)",
               percent=True),
    ), train=(*AAE_SEMI, "--labels", "100", *AAE_MNIST), fashion=(*AAE_SEMI, "--labels", "100", *AAE_FASHION)),
    Experiment("aae_semi1000", "aae", (
        Figure("error_rate", "semi-supervised test error, 1,000 labels", "1.60% ± 0.08 (Makhzani et al. 2016)",
               percent=True),
    ), train=(*AAE_SEMI, "--labels", "1000", *AAE_MNIST), fashion=(*AAE_SEMI, "--labels", "1000", *AAE_FASHION)),
    Experiment("aae_clustering", "aae", (
        Figure("clustering_error", "clustering error, 16 clusters", "9.55% (Makhzani et al. 2016)", percent=True),
    ), train=(*AAE_CLUSTERING, *AAE_MNIST), fashion=(*AAE_CLUSTERING, *AAE_FASHION)),
    Experiment("aae_parzen", "aae", (
        Figure("parzen_log_likelihood", "Parzen-window log-likelihood (nats), 8-D Gaussian code, 10,000 samples",
               "340 ± 2 (Makhzani et al. 2016, 10,000 samples, 60,000 digits)", "parzen_log_likelihood_se"),
        Figure("parzen_log_likelihood_same_n", "the same with as many samples as real images below", "–"),
        Figure("parzen_real_log_likelihood", "real training images as the kernels (3,500 / 10,000)",
               "k-means centroids score above real images (Theis et al. 2016, section 3.2)",
               "parzen_real_log_likelihood_se"),
        SAMPLE_SCORE,
        SAMPLE_CLASSES,
    ), train=("--batch-size", "100"), fashion=("--batch-size", "100"), judged=True,
        extra=("parzen_real_samples", "parzen_sigma", "parzen_real_sigma")),
)
BY_KEY = {e.key: e for e in EXPERIMENTS}


def newest_evaluation(run: Path) -> dict:
    """The metrics of the run's newest ``kgen evaluate`` record (metrics.json's "evaluations")."""
    return json.loads((run / "metrics.json").read_text())["evaluations"][-1]["metrics"]


def run_experiment(experiment: Experiment, dataset_key: str, out: Path, backend: str, judge: Path | None) -> dict:
    """Train and evaluate one cell; the record stored in the JSON."""
    run = out / f"{dataset_key}-{experiment.key}"
    if run.exists():
        raise SystemExit(f"{run} exists: choose another --out (runs are never overwritten)")
    train = ["train", experiment.model, "--dataset", DATASETS[dataset_key], *experiment.options(dataset_key),
             "--run-dir", str(run)]
    train_seconds = kgen(train, backend)
    evaluate = ["evaluate", str(run), *experiment.evaluate]
    if experiment.judged:
        evaluate += ["--classifier", str(judge)]
    evaluate_seconds = kgen(evaluate, backend)
    metrics = newest_evaluation(run)
    wanted = {f.metric for f in experiment.figures} | {f.standard_error for f in experiment.figures} | set(experiment.extra)
    return {"train_command": "kgen " + " ".join(train).replace(str(run), "RUN"),
            "evaluate_command": "kgen " + " ".join(evaluate).replace(str(run), "RUN").replace(str(judge), "JUDGE"),
            "train_seconds": round(train_seconds, 1), "evaluate_seconds": round(evaluate_seconds, 1),
            "backend": backend, "metrics": {k: v for k, v in metrics.items() if k in wanted}}


def cell(figure: Figure, record: dict | None) -> str:
    if record is None:
        return "not run"
    value = record["metrics"].get(figure.metric)
    if value is None:
        return "–"
    text = f"{100 * value:.1f}%" if figure.percent else f"{value:.4g}"
    se = record["metrics"].get(figure.standard_error) if figure.standard_error else None
    return text + (f" ± {se:.2g}" if se is not None else "")


def table(results: dict) -> str:
    """The Markdown table of a results JSON (every experiment, both datasets; "not run" where missing)."""
    machine = results.get("machine", {})
    lines = [(f"Last run on {machine.get('cpu_model', '?')} ({machine.get('cores_available', '?')} cores), "
              f"{machine.get('date', '?')[:10]}, by `python benchmarks/quality.py --all`; each cell's CPU is kept "
              "in the results JSON. Times: training + evaluation, minutes."), "",
             "| model | metric | MNIST-4.5k | Fashion-60k | literature (its data) | commands | minutes (MNIST / Fashion) |",
             "|---|---|---|---|---|---|---|"]
    for experiment in EXPERIMENTS:
        records = {d: results.get("cells", {}).get(f"{experiment.key}@{d}") for d in DATASETS}
        commands = "<br>".join(f"{d}: `{r['train_command']}`" for d, r in records.items() if r) or "–"
        minutes = " / ".join(f"{(r['train_seconds'] + r['evaluate_seconds']) / 60:.1f}" if r else "–"
                             for r in records.values())
        for i, figure in enumerate(experiment.figures):
            lines.append(f"| {experiment.model if i == 0 else ''} | {figure.label} | "
                         f"{cell(figure, records['mnist-4.5k'])} | {cell(figure, records['fashion-60k'])} | "
                         f"{figure.literature} | {commands if i == 0 else ''} | {minutes if i == 0 else ''} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="quality.py --all", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="*", choices=sorted(BY_KEY), default=None, help="experiments to run")
    parser.add_argument("--datasets", nargs="*", choices=sorted(DATASETS), default=list(DATASETS))
    parser.add_argument("--backend", default="tensorflow", choices=("tensorflow", "jax", "torch"))
    parser.add_argument("--out", default="runs/reproduction", help="folder of the runs (one per cell; never reused)")
    parser.add_argument("--json", default=str(DEFAULT_JSON), help="results, updated after every cell")
    parser.add_argument("--docs", default=None, help="rewrite the table in this Markdown file (docs/reproduction.md)")
    parser.add_argument("--report-only", action="store_true", help="train nothing: print (and --docs) the table")
    args = parser.parse_args(argv)

    path = Path(args.json)
    results = json.loads(path.read_text()) if path.is_file() else {"cells": {}}
    if not args.report_only:
        import harness  # the CPU model and flags, versions, date

        results["machine"] = harness.machine_record()
        out = Path(args.out)
        chosen = [BY_KEY[k] for k in args.only] if args.only else list(EXPERIMENTS)
        for dataset_key in args.datasets:
            judge, todo = None, list(chosen)
            if any(e.judged for e in chosen):
                judge = out / f"{dataset_key}-classifier"
                if JUDGE not in todo and not judge.exists():
                    todo.insert(0, JUDGE)  # the judge first, once per --out
            for experiment in todo:
                record = run_experiment(experiment, dataset_key, out, args.backend, judge)
                # each cell keeps the CPU it ran on (cells of several runs, and machines, share the table)
                record["machine"] = {key: results["machine"][key] for key in ("cpu_model", "cores_available", "flags")
                                     if key in results["machine"]}
                results["cells"][f"{experiment.key}@{dataset_key}"] = record
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(json.dumps(results, indent=1) + "\n")
                print(f"{dataset_key} {experiment.key}: {record['metrics']} "
                      f"({record['train_seconds'] / 60:.1f} + {record['evaluate_seconds'] / 60:.1f} min)", file=sys.stderr)
    markdown = table(results)
    print(markdown)
    if args.docs:
        import report

        if not report.rewrite(Path(args.docs), {"reproduction": markdown}):
            raise SystemExit(f"{args.docs} has no <!-- bench:reproduction --> markers")


if __name__ == "__main__":
    main()
