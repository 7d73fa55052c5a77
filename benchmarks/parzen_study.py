"""What the Parzen-window estimate of an AAE measures (docs/reproduction.md, "The Parzen-window estimate").

    python benchmarks/parzen_study.py RUN [RUN ...] [--n 3500] [--centroids 1000]

For each trained ``aae`` run, on its own data, under kgen's protocol (kgen.evaluate.parzen_summary: images
in [0, 1], the window chosen on 1,000 training images, the test split scored), the Parzen log-likelihood
of the test split with four sets of ``--n`` kernels:

- real training images (never the 1,000 that choose the window): what the data score themselves;
- the model's reconstructions of those same images: the decoder's part of the gap;
- the model's samples (decoded prior draws): what ``kgen evaluate`` reports;
- the k-means centroids of the real images (``--centroids`` of them; Theis et al. 2016, section 3.2: they
  score above the images).

``--curve N ...`` adds the real images at several numbers of kernels (the estimate grows with them).

Prints a Markdown table. Minutes per run on 2 cores (the k-means dominates).

    python benchmarks/parzen_study.py runs/aae-mnist                       # the four kernel sets, n = 3,500
    python benchmarks/parzen_study.py runs/aae-fashion --curve 1000 3500 10000 30000 58000
"""

from __future__ import annotations

import argparse
from pathlib import Path

import keras
import numpy as np
from sklearn.cluster import KMeans

from kgen import sampling
from kgen.data import load_dataset
from kgen.evaluate import PARZEN_VALIDATION, split_arrays
from kgen.metrics import parzen_evaluate, rescale
from kgen.outputs import batched
from kgen.runs import Run, load_model


def kernel_sets(run: Run, n: int, centroids: int, curve: list[int], seed: int = 0
                ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """({name: kernels in [0, 1], flattened}, validation, test) for one run."""
    data_range = run.config()["data_range"]
    unit = lambda x: rescale(np.asarray(x), data_range, "unit").reshape(len(x), -1)
    loaded = load_dataset(run.config()["dataset"], run.config().get("data_dir"), verbose=False)
    train, test = (split_arrays(run, split, loaded=loaded)[0] for split in ("train", "test"))
    order = np.random.default_rng(seed).permutation(len(train))
    validation, real = train[order[:PARZEN_VALIDATION]], train[order[PARZEN_VALIDATION:][:n]]
    model = load_model(run)
    rebuilt = batched(lambda b: keras.ops.convert_to_numpy(model.reconstruct(b)), real)
    kmeans = KMeans(n_clusters=min(centroids, len(real)), n_init=1, random_state=seed).fit(unit(real))
    kernels = {"real training images": unit(real), "their reconstructions": unit(rebuilt),
               "samples (decoded prior draws)": unit(sampling.sample_batches(model, len(real), seed)),
               f"k-means centroids of the real images ({len(kmeans.cluster_centers_)})": kmeans.cluster_centers_}
    kernels.update({f"real training images, first {m}": unit(train[order[PARZEN_VALIDATION:][:m]])
                    for m in curve if m != len(real) and m <= len(train) - PARZEN_VALIDATION})
    return kernels, unit(validation), unit(test)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="aae run directories")
    parser.add_argument("--n", type=int, default=3500, help="kernels per set (at most the training images left)")
    parser.add_argument("--centroids", type=int, default=1000)
    parser.add_argument("--curve", nargs="*", type=int, default=[], help="more numbers of real kernels")
    args = parser.parse_args()
    print("| run | kernels | n | Parzen log-likelihood (nats) | σ |")
    print("|---|---|---|---|---|")
    for path in args.runs:
        run = Run.open(Path(path))
        kernels, validation, test = kernel_sets(run, args.n, args.centroids, args.curve)
        for name, centres in kernels.items():
            r = parzen_evaluate(centres, validation, test)
            print(f"| {Path(path).name} | {name} | {len(centres)} | {r['parzen_log_likelihood']:.1f} ± "
                  f"{r['parzen_log_likelihood_se']:.1f} | {r['parzen_sigma']:.3f} |", flush=True)


if __name__ == "__main__":
    main()
