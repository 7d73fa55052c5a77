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
    python benchmarks/quality.py aae --validation ...               # choose settings on a held-out 10% of train
    python benchmarks/quality.py aae --baseline ...                 # + the same classifier without unlabelled data
    python benchmarks/quality.py aae --train-sizes 1000 2000 4500   # a learning curve over training-set size

By default every row runs the paper's recipe (``AAE_RECIPE``: two hidden layers, noise on the
encoder's input); ``--recipe default`` runs kgen's defaults.
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
        # every GAN with its conv networks (--width is their filters): dcgan has no other, the rest take --arch
        arch = [] if model == "dcgan" else ["--arch", "conv"]
        command = ["train", model, "--dataset", args.dataset, *arch, "--epochs", str(args.epochs), *steps,
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


# (key, name, model options) of the AAE rows: the paper's semi-supervised and clustering settings.
AAE_SETTINGS = (
    ("semi100", "semi-supervised, 100 labels", ["--mode", "semi-supervised", "--labels", "100"]),
    ("semi1000", "semi-supervised, 1000 labels", ["--mode", "semi-supervised", "--labels", "1000"]),
    ("clustering", "clustering, 16 clusters", ["--mode", "clustering", "--clusters", "16"]),
)
# Per-row options of the recipe, chosen on the MNIST validation split: the clustering row's style code is
# 4-D (36.8% validation error against 43% with 8-D and 49% with 2-D: a smaller z leaves the digit's
# identity to the categorical y).
AAE_RECIPE_ROWS = {"clustering": ["--latent-dim", "4"]}
# The paper's recipe (Makhzani et al. 2016, sections 5-6 and the Appendix) as far as it fits a 2-core
# budget: two hidden ReLU layers in the encoder and decoder (the paper's 1000 wide; --width here),
# Gaussian noise on the encoder's input, the phases' own learning rates. Chosen on a validation split
# carved from the training data (--validation), never on the test split: see docs/reproduction.md.
AAE_RECIPE = ["--depth", "2", "--input-noise", "0.3"]
AAE_FIGURES = ("error_rate", "clustering_error", "hungarian_accuracy", "clusters_used", "code_prior_mmd2",
               "reconstruction_bce")


def write_subset(dataset: str, path: Path, train_size: int | None, validation: bool) -> None:
    """An .npz of ``dataset``: the first ``train_size`` training examples (all: None) and the test split,
    or with ``validation`` the training split alone, its last 10% held out as the "test" split."""
    import numpy as np

    from kgen import data as kgen_data

    loaded = kgen_data.load_dataset(dataset, None, verbose=False)

    def arrays(split):
        x, y = kgen_data.dataset_arrays(loaded, split, "unit")
        return np.round(x * 255).astype(np.uint8), y.astype(np.int64)

    x, y = arrays("train")  # kgen's training split is already in a shuffled order
    available = len(x)
    if validation:
        held = len(x) // 10
        x, y, x_test, y_test = x[:-held], y[:-held], x[-held:], y[-held:]
    else:
        x_test, y_test = arrays("test")
    if train_size is not None:
        x, y = x[:train_size], y[:train_size]
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, x=x, y=y, x_test=x_test, y_test=y_test, available=available)


def subset_sizes(path: Path) -> tuple[int, int]:
    """(training examples in the subset, training examples it was taken from)."""
    import numpy as np

    with np.load(path) as f:
        return len(f["y"]), int(f["available"])


def aae_quality(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="quality.py aae", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="*", default=["mnist", "/usr/share/datasets/fashion-mnist"])
    parser.add_argument("--backend", default="tensorflow", choices=("tensorflow", "jax", "torch"))
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--width", type=int, default=512, help="hidden units per layer (the paper: 1000)")
    parser.add_argument("--recipe", choices=("paper", "default"), default="paper",
                        help="paper: AAE_RECIPE's options; default: kgen's defaults (one 512-unit layer, no noise)")
    parser.add_argument("--baseline", action="store_true",
                        help="also train each semi-supervised row's classifier alone (--supervised-only: the same "
                             "encoder and label head on the same labelled examples) and print the error ratio")
    parser.add_argument("--train-sizes", nargs="*", type=int, default=None,
                        help="a learning curve: rerun each row on the first N training examples for each N "
                             "(the same test split and number of training steps: --epochs x the whole split's "
                             "batches; a row needs at least 2 x its labels)")
    parser.add_argument("--validation", action="store_true",
                        help="hold out the last 10%% of the training split and report on it instead of the test "
                             "split (for choosing settings)")
    parser.add_argument("--extra", nargs=argparse.REMAINDER, default=[],
                        help="more `kgen train aae` options for every row (last; e.g. --extra --latent-dim 4)")
    parser.add_argument("--only", nargs="*", default=None, help="rows to run: semi100 semi1000 clustering")
    parser.add_argument("--eval-limit", type=int, default=None, help="test examples `kgen evaluate` reads (all: none)")
    parser.add_argument("--out", default="runs/quality-aae", help="folder for the runs (must not hold them yet)")
    args = parser.parse_args(argv)
    settings = [s for s in AAE_SETTINGS if args.only is None or s[0] in args.only]
    recipe = (AAE_RECIPE if args.recipe == "paper" else []) + ["--hidden", str(args.width)] + args.extra
    split = "validation (last 10% of the training split)" if args.validation else "test split"

    rows = []
    out = Path(args.out)
    for dataset in args.datasets:
        sizes = args.train_sizes or [None]
        for size in sizes:
            source, epochs = dataset, args.epochs
            if size is not None or args.validation:
                source = str(out / "data" / f"{Path(dataset).name}-{size or 'all'}{'-val' if args.validation else ''}.npz")
                if not Path(source).exists():
                    write_subset(dataset, Path(source), size, args.validation)
                if size is not None:
                    # The same number of training steps at every size: --epochs passes over the whole
                    # training split's worth of batches, so a curve compares data, not training time.
                    taken, available = subset_sizes(Path(source))
                    epochs = max(1, round(args.epochs * available / taken))
                    if taken == available and not args.validation:
                        source = dataset  # the whole dataset: named as a user would
            for key, name, options in settings:
                labels = int(options[-1]) if "--labels" in options else 0
                if size is not None and size < 2 * labels:
                    continue
                variants = [("aae", [])] + ([("supervised only", ["--supervised-only"])]
                                            if args.baseline and labels else [])
                for variant, flags in variants:
                    run = out / f"{Path(dataset).name}-{size or 'all'}-{key}{'-baseline' if flags else ''}"
                    row_recipe = AAE_RECIPE_ROWS.get(key, []) if args.recipe == "paper" else []
                    command = ["train", "aae", *options, *recipe, *row_recipe, *flags, "--dataset", source,
                               "--epochs", str(epochs), "--batch-size", str(args.batch_size), "--run-dir", str(run)]
                    train_seconds = kgen(command, args.backend)
                    limit = [] if args.eval_limit is None else ["--limit", str(args.eval_limit)]
                    kgen(["evaluate", str(run), *limit], args.backend)
                    report = evaluation(run)
                    rows.append((Path(dataset).name, size, f"{name}{', ' + variant if flags else ''}",
                                 " ".join(command), train_seconds, report))
                    print(f"{dataset} {size or 'all'} {rows[-1][2]}: {train_seconds / 60:.1f} min, "
                          + ", ".join(f"{f} {report[f]:.4g}" for f in AAE_FIGURES if f in report), file=sys.stderr)

    print(f"\n{args.backend}, {args.epochs} epochs, batch {args.batch_size}; {split}\n")
    print("| data | training examples | setting | command | training | " + " | ".join(AAE_FIGURES) + " |")
    print("|---|---|---|---|---|" + "---|" * len(AAE_FIGURES))
    for dataset, size, name, command, train_seconds, report in rows:
        cells = [f"{report[f]:.4g}" if f in report else "-" for f in AAE_FIGURES]
        print(f"| {dataset} | {size or 'all'} | {name} | `kgen {command}` | {train_seconds / 60:.1f} min | "
              + " | ".join(cells) + " |")
    ratios = [(a, b) for a in rows for b in rows if b[2] == a[2] + ", supervised only" and a[:2] == b[:2]]
    for aae, baseline in ratios:
        print(f"\n{aae[0]} ({aae[1] or 'all'} examples), {aae[2]}: error {aae[5]['error_rate']:.4f} vs the same "
              f"classifier alone {baseline[5]['error_rate']:.4f}: ratio {aae[5]['error_rate'] / baseline[5]['error_rate']:.2f}")


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
