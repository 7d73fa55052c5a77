"""Model quality after a fixed training budget (long; not CI).

    python benchmarks/quality.py --all ...   the reproduction table of every family (benchmarks/reproduction.py)
    python benchmarks/quality.py [gan] ...   GAN sample quality judged by a domain classifier
    python benchmarks/quality.py aae ...     adversarial autoencoders: the paper's error rates

gan: runs the real commands a user would: trains a ``classifier`` on the dataset, then each
generator for ``--epochs`` x ``--steps-per-epoch`` generator steps, then
``kgen evaluate RUN --n N --classifier CLASSIFIER`` (FID, KID, classifier score, mode
coverage, label accuracy for cgan, precision/recall, and the real-vs-real floor: as many
training images as samples against the test split). Prints a markdown table with each command and its wall time.

    python benchmarks/quality.py                                   # Fashion-MNIST (Debian IDX files)
    python benchmarks/quality.py --dataset fashion_mnist --backend jax --epochs 20 --steps-per-epoch 0
        (--steps-per-epoch 0: whole passes over the data)

The FID here is in the classifier's 128-D feature space, so it is not comparable with
Inception-FID figures from papers (Lucic et al.: Fashion-MNIST 21-27); compare models with
each other and with the floor.

aae: Makhzani et al.'s MNIST figures are 1.90% test error with 100 labels, ~1.60% with 1,000
(semi-supervised) and 9.55% clustering error with 16 clusters. This trains
``aae --mode semi-supervised --labels 100``, ``--labels 1000`` and ``--mode clustering --clusters 16``
on each ``--datasets`` entry for ``--epochs`` passes and prints the test error, the clustering
error, the code-vs-prior MMD^2 and the wall time beside each command.

    python benchmarks/quality.py aae                               # the bundled MNIST digits + Fashion-MNIST
    python benchmarks/quality.py aae --datasets mnist --epochs 100  # full MNIST (TFDS, with internet once)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KGEN = [sys.executable, "-m", "cli.main"]
FIGURES = ("fid", "kid", "classifier_score", "modes_covered", "label_accuracy", "precision", "recall",
           "fid_real_floor", "kid_real_floor", "classifier_score_real")


def evaluation(run: Path, split: str = "test") -> dict:
    """The metrics of the run's newest `kgen evaluate` record of ``split`` (metrics.json's "evaluations";
    this script evaluates every run on its own data only)."""
    records = json.loads((run / "metrics.json").read_text())["evaluations"]
    return [r for r in records if r["data"]["split"] == split][-1]["metrics"]


def kgen(args: list[str], backend: str) -> float:
    """Run `kgen ARGS` on ``backend``; returns its wall time in seconds."""
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
    start = time.perf_counter()
    result = subprocess.run(KGEN + args, cwd=ROOT, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"kgen {' '.join(args)} failed:\n{result.stderr[-3000:]}")
    return time.perf_counter() - start


def gan_quality(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="quality.py gan", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="/usr/share/datasets/fashion-mnist")
    parser.add_argument("--backend", default="tensorflow", choices=("tensorflow", "jax", "torch"))
    parser.add_argument("--models", nargs="*", default=["dcgan", "wgan_gp", "cgan"])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--steps-per-epoch", type=int, default=300, help="generator steps per epoch (0: one pass)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--width", type=int, default=32, help="GAN width (conv filters of D's first layer)")
    parser.add_argument("--classifier-epochs", type=int, default=3)
    parser.add_argument("--n", type=int, default=10_000, help="samples judged")
    parser.add_argument("--out", default="runs/quality", help="folder for the runs (must not hold them yet)")
    args = parser.parse_args(argv)

    out = Path(args.out)
    steps = [] if args.steps_per_epoch == 0 else ["--steps-per-epoch", str(args.steps_per_epoch)]
    classifier = out / "classifier"
    command = ["train", "classifier", "--dataset", args.dataset, "--epochs", str(args.classifier_epochs),
               "--run-dir", str(classifier)]
    seconds = kgen(command, args.backend)
    kgen(["evaluate", str(classifier)], args.backend)
    accuracy = evaluation(classifier)["accuracy"]
    print(f"classifier: `kgen {' '.join(command)}` ({seconds / 60:.1f} min): test accuracy {accuracy:.4f}",
          file=sys.stderr)

    rows = []
    for model in args.models:
        run = out / model
        command = ["train", model, "--dataset", args.dataset, "--epochs", str(args.epochs), *steps,
                   "--batch-size", str(args.batch_size), "--width", str(args.width), "--run-dir", str(run)]
        train_seconds = kgen(command, args.backend)
        kgen(["evaluate", str(run), "--n", str(args.n), "--classifier", str(classifier)], args.backend)
        report = evaluation(run)
        rows.append((model, " ".join(command), train_seconds, report))
        print(f"{model}: {train_seconds / 60:.1f} min, FID {report['fid']:.2f}", file=sys.stderr)

    print(f"\n{args.backend}, {args.n} samples vs the test split, features of a classifier with test accuracy "
          f"{accuracy:.4f}\n")
    print("| model | command | training | " + " | ".join(FIGURES) + " |")
    print("|---|---|---|" + "---|" * len(FIGURES))
    for model, command, train_seconds, report in rows:
        cells = [f"{report[f]:.4g}" if f in report else "-" for f in FIGURES]
        print(f"| {model} | `kgen {command}` | {train_seconds / 60:.1f} min | " + " | ".join(cells) + " |")


# (name, model options) of the AAE rows: the paper's semi-supervised and clustering settings.
AAE_SETTINGS = (
    ("semi-supervised, 100 labels", ["--mode", "semi-supervised", "--labels", "100"]),
    ("semi-supervised, 1000 labels", ["--mode", "semi-supervised", "--labels", "1000"]),
    ("clustering, 16 clusters", ["--mode", "clustering", "--clusters", "16"]),
)
AAE_FIGURES = ("error_rate", "clustering_error", "hungarian_accuracy", "code_prior_mmd2", "reconstruction_bce")


def aae_quality(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="quality.py aae", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="*", default=["mnist", "/usr/share/datasets/fashion-mnist"])
    parser.add_argument("--backend", default="tensorflow", choices=("tensorflow", "jax", "torch"))
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--only", nargs="*", default=None, help="rows to run: semi100 semi1000 clustering")
    parser.add_argument("--out", default="runs/quality-aae", help="folder for the runs (must not hold them yet)")
    args = parser.parse_args(argv)
    keys = {"semi100": 0, "semi1000": 1, "clustering": 2}
    settings = [AAE_SETTINGS[keys[k]] for k in args.only] if args.only else list(AAE_SETTINGS)

    rows = []
    for dataset in args.datasets:
        for name, options in settings:
            run = Path(args.out) / f"{Path(dataset).name}-{name.split(',')[0]}-{options[-1]}"
            command = ["train", "aae", *options, "--dataset", dataset, "--epochs", str(args.epochs),
                       "--batch-size", str(args.batch_size), "--run-dir", str(run)]
            train_seconds = kgen(command, args.backend)
            kgen(["evaluate", str(run)], args.backend)
            report = evaluation(run)
            rows.append((dataset, name, " ".join(command), train_seconds, report))
            print(f"{dataset} {name}: {train_seconds / 60:.1f} min, "
                  + ", ".join(f"{f} {report[f]:.4g}" for f in AAE_FIGURES if f in report), file=sys.stderr)

    print(f"\n{args.backend}, {args.epochs} epochs, batch {args.batch_size}; test split\n")
    print("| data | setting | command | training | " + " | ".join(AAE_FIGURES) + " |")
    print("|---|---|---|---|" + "---|" * len(AAE_FIGURES))
    for dataset, name, command, train_seconds, report in rows:
        cells = [f"{report[f]:.4g}" if f in report else "-" for f in AAE_FIGURES]
        print(f"| {Path(dataset).name} | {name} | `kgen {command}` | {train_seconds / 60:.1f} min | "
              + " | ".join(cells) + " |")


def main() -> None:
    argv = sys.argv[1:]
    if argv and argv[0] in ("--all", "all"):
        import reproduction  # the reproduction table of every family (docs/reproduction.md)

        reproduction.main(argv[1:])
    elif argv and argv[0] == "aae":
        aae_quality(argv[1:])
    else:
        gan_quality(argv[1:] if argv and argv[0] == "gan" else argv)


if __name__ == "__main__":
    main()
