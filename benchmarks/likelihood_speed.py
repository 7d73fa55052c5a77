"""Speed of the VAE importance-weighted bound (kgen.metrics.likelihood) with K = 5,000 samples.

The default `kgen train vae` network (dense 784-512-(2 x 2) encoder, 2-512-784 decoder, Bernoulli
decoder; untrained: the cost does not depend on the weights) on random binary 28x28 images. Each
backend runs in its own process; the first call (compilation) is excluded; each measurement is the
best of ``--rounds``. Reports examples/s, the decoder rows (latents) per second, the achieved
GFLOP/s of the decoder's two matmuls, numpy sgemm in the same process as the machine's ceiling,
and the time 10,000 test images would take.

    python benchmarks/likelihood_speed.py [--k 5000] [--examples 16] [--rounds 2] [--chunk 1000 --batch 8]
        [--backends jax tensorflow torch] [--json out.json]
    python benchmarks/likelihood_speed.py --ais [--steps 1000] [--runs 100]
        AIS instead: an MNIST-size RBM (784 visible, 500 hidden, the paper's), M runs, ``--steps`` linear steps;
        reports steps/s and the time of the paper's 14,500-step schedule.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def sgemm_gflops(n: int = 2048, repeats: int = 3) -> float:
    a = np.random.rand(n, n).astype(np.float32)
    b = np.random.rand(n, n).astype(np.float32)
    a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2.0 * n**3 * repeats / (time.perf_counter() - start) / 1e9


def worker(args) -> dict:
    from kgen.metrics.likelihood import binarize, importance_sampling
    from kgen.models.vae import VAE

    model = VAE((28, 28, 1), seed=0)
    x = binarize(np.random.default_rng(0).random((args.examples, 28, 28, 1)), seed=0)
    kwargs = {"chunk": args.chunk, "batch_size": args.batch}
    importance_sampling(model, x[: args.batch or 8], k=min(args.k, args.chunk or 1000), **kwargs)  # compile
    times = []
    for _ in range(args.rounds):
        start = time.perf_counter()
        importance_sampling(model, x, k=args.k, **kwargs)
        times.append(time.perf_counter() - start)
    seconds = min(times)
    rows = args.examples * args.k / seconds
    decoder_flops = 2.0 * (2 * 512 + 512 * 784)  # per latent: the decoder's two matmuls
    import keras

    return {"backend": keras.backend.backend(), "k": args.k, "examples": args.examples, "seconds": seconds,
            "examples_per_s": args.examples / seconds, "latents_per_s": rows,
            "decoder_gflops": rows * decoder_flops / 1e9, "sgemm_gflops": sgemm_gflops(),
            "minutes_for_10000": 10_000 / (args.examples / seconds) / 60}


def ais_worker(args) -> dict:
    import keras

    from kgen.metrics.ais import ais_log_weights, linear_schedule
    from kgen.models.rbm import RBM

    model = RBM((28, 28, 1), hidden=500, seed=0)
    bias = np.zeros(784)
    ais_log_weights(model, linear_schedule(10), bias, args.runs)  # compile
    times = []
    for _ in range(args.rounds):
        start = time.perf_counter()
        ais_log_weights(model, linear_schedule(args.steps), bias, args.runs)
        times.append(time.perf_counter() - start)
    steps_per_s = args.steps / min(times)
    flops = 2 * 2.0 * args.runs * 784 * 500  # two (M x 784) @ (784 x 500) products a step
    return {"backend": keras.backend.backend(), "runs": args.runs, "steps": args.steps, "steps_per_s": steps_per_s,
            "gflops": steps_per_s * flops / 1e9, "sgemm_gflops": sgemm_gflops(),
            "minutes_for_paper_schedule": 14_500 / steps_per_s / 60}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--k", type=int, default=5000)
    parser.add_argument("--examples", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--chunk", type=int, default=None)
    parser.add_argument("--batch", type=int, default=None)
    parser.add_argument("--backends", nargs="+", default=["jax", "tensorflow", "torch"])
    parser.add_argument("--json", default=None)
    parser.add_argument("--ais", action="store_true")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print("RESULT " + json.dumps(ais_worker(args) if args.ais else worker(args)))
        return
    results = []
    for backend in args.backends:
        command = [sys.executable, __file__, "--worker", "--k", str(args.k), "--examples", str(args.examples),
                   "--rounds", str(args.rounds)]
        if args.ais:
            command += ["--ais", "--steps", str(args.steps), "--runs", str(args.runs)]
        for flag, value in (("--chunk", args.chunk), ("--batch", args.batch)):
            if value is not None:
                command += [flag, str(value)]
        env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "2",
               "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
        out = subprocess.run(command, capture_output=True, text=True, env=env)
        lines = [line for line in out.stdout.splitlines() if line.startswith("RESULT ")]
        if not lines:
            print(f"{backend}: failed\n{out.stderr[-2000:]}", file=sys.stderr)
            continue
        result = json.loads(lines[-1][7:])
        results.append(result)
        if args.ais:
            print(f"{backend:10s} AIS M={result['runs']}: {result['steps_per_s']:.0f} steps/s ({result['gflops']:.0f} "
                  f"GFLOP/s, numpy sgemm {result['sgemm_gflops']:.0f}); the paper's 14,500 steps: "
                  f"{result['minutes_for_paper_schedule']:.1f} min")
            continue
        print(f"{backend:10s} K={result['k']}: {result['examples_per_s']:.2f} examples/s "
              f"({result['latents_per_s'] / 1e3:.0f}k latents/s, decoder {result['decoder_gflops']:.0f} GFLOP/s, "
              f"numpy sgemm {result['sgemm_gflops']:.0f}); 10,000 images: {result['minutes_for_10000']:.0f} min")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
