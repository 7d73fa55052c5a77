"""Training throughput of kgen's conv VAE against hand-written references, in one run.

Network: the keras-io "Variational AutoEncoder" (28x28x1, conv 32/64 stride 2,
Dense 16, 2-D latent, transposed convs back), batch 128, binary cross-entropy
summed over pixels + closed-form KL. Measured, interleaved round by round:

  kgen-<backend>-jit / -nojit  kgen's VAE through `model.fit` (the phased core)
  ref-keras-io-tape            the keras-io loop: keras layers + tf.GradientTape in a tf.function
  ref-pytorch                  the same network in plain PyTorch (nn.Module + torch.optim.Adam)

Each measurement runs in a fresh process (one Keras backend per process); the
timed window excludes start-up and compilation. Also measures numpy sgemm in the
same run as the machine's ceiling and reports achieved GFLOP/s as a fraction.

    python benchmarks/train_throughput.py [--rounds 2] [--steps 60] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

BATCH = 128


def train_flops_per_sample() -> float:
    """Multiply-adds of the forward pass x 2 (FLOPs) x 3 (forward + backward)."""
    macs = (
        14 * 14 * 32 * 9 * 1  # conv 32, stride 2
        + 7 * 7 * 64 * 9 * 32  # conv 64, stride 2
        + 7 * 7 * 64 * 16 + 16 * 4  # dense 16, mean/log-var heads
        + 2 * 7 * 7 * 64  # decoder dense
        + 7 * 7 * 64 * 9 * 64  # conv-transpose 64, stride 2 (input pixels x kernel x in x out)
        + 14 * 14 * 64 * 9 * 32  # conv-transpose 32, stride 2
        + 28 * 28 * 32 * 9 * 1  # conv-transpose 1
    )
    return 2.0 * macs * 3.0


def sgemm_gflops(n: int = 2048, repeats: int = 5) -> float:
    import numpy as np

    a = np.random.rand(n, n).astype(np.float32)
    b = np.random.rand(n, n).astype(np.float32)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def data(n: int = 1280):
    import numpy as np

    return (np.random.default_rng(0).random((n, 28, 28, 1)) > 0.5).astype("float32")


# -- workers (one per process) ------------------------------------------------------
def worker_kgen(steps: int, jit: bool) -> float:
    import keras
    import tensorflow as tf

    from kgen.models import VAE

    model = VAE((28, 28, 1), seed=0, arch="conv", latent_dim=2, hidden=16)
    model.compile(learning_rate=1e-3, jit_compile=jit)
    ds = tf.data.Dataset.from_tensor_slices(data()).repeat().batch(BATCH).prefetch(tf.data.AUTOTUNE)

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds = time.perf_counter() - self.start

    timer = Timer()
    model.fit(ds, epochs=1, steps_per_epoch=5, verbose=0)  # compile / warm up
    model.fit(ds, epochs=1, steps_per_epoch=steps, verbose=0, callbacks=[timer])
    return steps * BATCH / timer.seconds


def worker_keras_io_tape(steps: int) -> float:
    """keras-io's VAE training loop, written out with tf.GradientTape."""
    import keras
    import tensorflow as tf
    from keras import layers

    inputs = keras.Input((28, 28, 1))
    h = layers.Conv2D(32, 3, strides=2, padding="same", activation="relu")(inputs)
    h = layers.Conv2D(64, 3, strides=2, padding="same", activation="relu")(h)
    h = layers.Dense(16, activation="relu")(layers.Flatten()(h))
    encoder = keras.Model(inputs, [layers.Dense(2)(h), layers.Dense(2)(h)])
    z_in = keras.Input((2,))
    h = layers.Reshape((7, 7, 64))(layers.Dense(7 * 7 * 64, activation="relu")(z_in))
    h = layers.Conv2DTranspose(64, 3, strides=2, padding="same", activation="relu")(h)
    h = layers.Conv2DTranspose(32, 3, strides=2, padding="same", activation="relu")(h)
    decoder = keras.Model(z_in, layers.Conv2DTranspose(1, 3, padding="same")(h))
    optimizer = keras.optimizers.Adam(1e-3)
    variables = encoder.trainable_variables + decoder.trainable_variables

    @tf.function
    def step(x):
        with tf.GradientTape() as tape:
            mean, log_var = encoder(x)
            z = mean + tf.exp(0.5 * log_var) * tf.random.normal(tf.shape(mean))
            logits = decoder(z)
            rec = tf.reduce_mean(tf.reduce_sum(tf.nn.sigmoid_cross_entropy_with_logits(x, logits), axis=(1, 2, 3)))
            kl = tf.reduce_mean(-0.5 * tf.reduce_sum(1 + log_var - mean**2 - tf.exp(log_var), axis=1))
            loss = rec + kl
        optimizer.apply(tape.gradient(loss, variables), variables)
        return loss

    ds = iter(tf.data.Dataset.from_tensor_slices(data()).repeat().batch(BATCH).prefetch(tf.data.AUTOTUNE))
    for _ in range(5):
        step(next(ds))
    start = time.perf_counter()
    for _ in range(steps):
        loss = step(next(ds))
    float(loss)
    return steps * BATCH / (time.perf_counter() - start)


def worker_pytorch(steps: int) -> float:
    import torch
    from torch import nn

    torch.manual_seed(0)
    encoder = nn.Sequential(
        nn.Conv2d(1, 32, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.ReLU(),
        nn.Flatten(), nn.Linear(7 * 7 * 64, 16), nn.ReLU(), nn.Linear(16, 4),
    )
    decoder = nn.Sequential(
        nn.Linear(2, 7 * 7 * 64), nn.ReLU(), nn.Unflatten(1, (64, 7, 7)),
        nn.ConvTranspose2d(64, 64, 3, stride=2, padding=1, output_padding=1), nn.ReLU(),
        nn.ConvTranspose2d(64, 32, 3, stride=2, padding=1, output_padding=1), nn.ReLU(),
        nn.ConvTranspose2d(32, 1, 3, padding=1),
    )
    optimizer = torch.optim.Adam(list(encoder.parameters()) + list(decoder.parameters()), lr=1e-3)
    x_all = torch.from_numpy(data()).permute(0, 3, 1, 2).contiguous()
    bce = nn.BCEWithLogitsLoss(reduction="none")

    def step(x):
        optimizer.zero_grad()
        h = encoder(x)
        mean, log_var = h[:, :2], h[:, 2:]
        z = mean + torch.exp(0.5 * log_var) * torch.randn_like(mean)
        rec = bce(decoder(z), x).sum(dim=(1, 2, 3)).mean()
        kl = (-0.5 * (1 + log_var - mean**2 - log_var.exp()).sum(dim=1)).mean()
        loss = rec + kl
        loss.backward()
        optimizer.step()
        return loss

    batches = [x_all[i : i + BATCH] for i in range(0, len(x_all), BATCH)]
    for i in range(5):
        step(batches[i % len(batches)])
    start = time.perf_counter()
    for i in range(steps):
        loss = step(batches[i % len(batches)])
    float(loss)
    return steps * BATCH / (time.perf_counter() - start)


CONFIGS = {
    "kgen-tensorflow-nojit": ("tensorflow", "kgen", False),
    "kgen-tensorflow-jit": ("tensorflow", "kgen", True),
    "kgen-jax-jit": ("jax", "kgen", True),
    "kgen-jax-nojit": ("jax", "kgen", False),
    "kgen-torch-nojit": ("torch", "kgen", False),
    "ref-keras-io-tape": ("tensorflow", "tape", None),
    "ref-pytorch": ("torch", "pytorch", None),
}


def measure(name: str, steps: int) -> float:
    backend, kind, jit = CONFIGS[name]
    code = (
        "import sys, json; sys.path.insert(0, %r); import train_throughput as b; "
        "print('RESULT', json.dumps(b.run_worker(%r, %d, %r)))" % (os.path.dirname(os.path.abspath(__file__)), kind, steps, jit)
    )
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=1200)
    lines = [line for line in out.stdout.splitlines() if line.startswith("RESULT ")]
    if not lines:
        raise RuntimeError(f"{name} failed:\n{out.stderr[-3000:]}")
    return json.loads(lines[-1][7:])


def run_worker(kind: str, steps: int, jit):
    if kind == "kgen":
        eager_jax = os.environ["KERAS_BACKEND"] == "jax" and jit is False
        return worker_kgen(max(steps // 6, 5) if eager_jax else steps, jit)  # eager JAX is slow: fewer steps
    if kind == "tape":
        return worker_keras_io_tape(steps)
    return worker_pytorch(steps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--only", nargs="*", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    results: dict[str, list[float]] = {name: [] for name in args.only}
    gemm = []
    for round_ in range(args.rounds):
        gemm.append(sgemm_gflops())
        for name in args.only:  # interleaved: every config once per round
            results[name].append(measure(name, args.steps))
            print(f"round {round_ + 1}: {name:24s} {results[name][-1]:8.0f} samples/s", file=sys.stderr)

    ceiling = max(gemm)
    flops = train_flops_per_sample()
    best = {name: max(values) for name, values in results.items()}
    refs = {r: best[r] for r in ("ref-keras-io-tape", "ref-pytorch") if r in best}
    print(f"\nconv VAE (keras-io), batch {BATCH}, {flops / 1e6:.1f} MFLOP per training sample; "
          f"numpy sgemm ceiling {ceiling:.0f} GFLOP/s; best of {args.rounds} interleaved rounds\n")
    header = f"| {'config':24s} | samples/s | GFLOP/s | % of sgemm |" + "".join(f" vs {r} |" for r in refs)
    print(header)
    print("|" + "---|" * (4 + len(refs)))
    for name, value in best.items():
        gflops = value * flops / 1e9
        ratios = "".join(f" {value / ref:.2f}x |" for ref in refs.values())
        print(f"| {name:24s} | {value:9.0f} | {gflops:7.1f} | {100 * gflops / ceiling:9.1f}% |{ratios}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"samples_per_s": results, "sgemm_gflops": gemm, "mflop_per_sample": flops / 1e6}, f, indent=2)


if __name__ == "__main__":
    main()
