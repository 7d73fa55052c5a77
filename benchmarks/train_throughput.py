"""Training throughput of kgen's conv VAE against hand-written references, in one run.

Network: the keras-io "Variational AutoEncoder" (28x28x1, conv 32/64 stride 2,
Dense 16, 2-D latent, transposed convs back), batch 128, binary cross-entropy
summed over pixels + closed-form KL. Measured, interleaved round by round:

  kgen-<backend>-jit / -nojit  kgen's VAE through `model.fit` (the phased core)
  ref-keras-io                 keras-io's VAE as published: train_step with tf.GradientTape, fit()
  ref-tf-tape-loop             the same network as a bare tf.function + GradientTape loop
  ref-jax                      the same network in plain JAX (lax convolutions, jitted step)
  ref-pytorch                  the same network in plain PyTorch (nn.Module + torch.optim.Adam)

Each kgen configuration is compared with its own backend's reference
(tensorflow: ref-keras-io, jax: ref-jax, torch: ref-pytorch) and with keras-io.

Each measurement runs in a fresh process (one Keras backend per process); the
timed window excludes start-up and compilation. Also measures numpy sgemm in the
same run as the machine's ceiling and reports achieved GFLOP/s as a fraction.

    python benchmarks/train_throughput.py [--rounds 2] [--steps 60] [--json out.json]
    python benchmarks/train_throughput.py --suite ae-family --steps 320   (benchmarks/ae_family.py; a multiple
        of 32 keeps kgen's default of 32 steps per execution)
    python benchmarks/train_throughput.py --suite gan [--steps 64] [--only dcgan wgan_gp]   (benchmarks/gan.py:
        DCGAN and WGAN-GP; --steps a multiple of 32 as above, after a 32-step warm-up; slow on a small CPU)
    python benchmarks/train_throughput.py --suite aae [--steps 128] [--only aae aae_semi_supervised]
        (benchmarks/aae.py: the unsupervised and the semi-supervised adversarial autoencoder)
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time

import numpy as np

from harness import BATCH, WARMUP, data, jax_adam_trainer, measure, pipeline, run_stateful, time_fit, timed


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
    a = np.random.rand(n, n).astype(np.float32)
    b = np.random.rand(n, n).astype(np.float32)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


# -- workers (one per process) ------------------------------------------------------
def worker_kgen(steps: int, jit: bool) -> float:
    from kgen.models import VAE
    from kgen.train import compile_options

    model = VAE((28, 28, 1), seed=0, arch="conv", latent_dim=2, hidden=16)
    # as `kgen train --jit/--no-jit`; steps per execution a divisor of the fits' step counts, as kgen train picks
    model.compile(learning_rate=1e-3, **compile_options(jit, steps=(WARMUP, steps)))
    return time_fit(model, pipeline(), steps, WARMUP)


def _keras_io_networks(sigmoid_output: bool):
    """The keras-io VAE's encoder (mean, log-var heads) and decoder, built from keras layers."""
    import keras
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
    out = layers.Conv2DTranspose(1, 3, padding="same", activation="sigmoid" if sigmoid_output else None)(h)
    return encoder, keras.Model(z_in, out)


def worker_keras_io(steps: int) -> float:
    """keras-io's VAE as published: a keras.Model whose train_step uses tf.GradientTape,
    sigmoid decoder output + keras binary_crossentropy, loss trackers, trained by fit()."""
    import keras
    import tensorflow as tf
    from keras import ops

    class KerasIoVAE(keras.Model):
        def __init__(self):
            super().__init__()
            self.encoder, self.decoder = _keras_io_networks(sigmoid_output=True)
            self.seed_generator = keras.random.SeedGenerator(1337)
            self.trackers = [keras.metrics.Mean(name=n) for n in ("loss", "reconstruction_loss", "kl_loss")]

        @property
        def metrics(self):
            return self.trackers

        def train_step(self, data):
            with tf.GradientTape() as tape:
                z_mean, z_log_var = self.encoder(data)
                eps = keras.random.normal(ops.shape(z_mean), seed=self.seed_generator)
                reconstruction = self.decoder(z_mean + ops.exp(0.5 * z_log_var) * eps)
                rec = ops.mean(ops.sum(keras.losses.binary_crossentropy(data, reconstruction), axis=(1, 2)))
                kl = ops.mean(ops.sum(-0.5 * (1 + z_log_var - ops.square(z_mean) - ops.exp(z_log_var)), axis=1))
                total = rec + kl
            grads = tape.gradient(total, self.trainable_weights)
            self.optimizer.apply_gradients(zip(grads, self.trainable_weights))
            for tracker, value in zip(self.trackers, (total, rec, kl)):
                tracker.update_state(value)
            return {t.name: t.result() for t in self.trackers}

    model = KerasIoVAE()
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    return time_fit(model, pipeline(), steps)


def worker_tape_loop(steps: int) -> float:
    """The same network as a bare tf.function + GradientTape loop: no fit(), no metrics,
    fused sigmoid cross-entropy from logits (a stricter reference than keras-io)."""
    import keras
    import tensorflow as tf

    encoder, decoder = _keras_io_networks(sigmoid_output=False)
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

    return timed(step, iter(pipeline()), steps, float)


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

    batches = itertools.cycle([x_all[i : i + BATCH] for i in range(0, len(x_all), BATCH)])
    return timed(step, batches, steps, float)


def worker_jax(steps: int) -> float:
    """The same network in plain JAX: lax convolutions, a hand-written Adam, one jitted step."""
    import jax
    import jax.numpy as jnp
    from jax import lax

    rng = np.random.default_rng(0)
    shapes = {"c1": (3, 3, 1, 32), "c2": (3, 3, 32, 64), "d1": (3136, 16), "heads": (16, 4), "d2": (2, 3136),
              "t1": (3, 3, 64, 64), "t2": (3, 3, 32, 64), "t3": (3, 3, 1, 32)}  # conv-transpose kernels: (h, w, out, in)
    params = {k: jnp.asarray(rng.normal(0, 0.05, s).astype("float32")) for k, s in shapes.items()}
    params.update({"b" + k: jnp.zeros(s[-2] if k.startswith("t") else s[-1]) for k, s in shapes.items()})
    dims = ("NHWC", "HWIO", "NHWC")

    def conv(p, x, k, stride):
        return lax.conv_general_dilated(x, p[k], (stride, stride), "SAME", dimension_numbers=dims) + p["b" + k]

    def conv_t(p, x, k, stride):
        y = lax.conv_transpose(x, p[k], (stride, stride), "SAME", dimension_numbers=dims, transpose_kernel=True)
        return y + p["b" + k]

    def loss_fn(p, x, key):
        h = jax.nn.relu(conv(p, jax.nn.relu(conv(p, x, "c1", 2)), "c2", 2)).reshape(x.shape[0], -1)
        out = jax.nn.relu(h @ p["d1"] + p["bd1"]) @ p["heads"] + p["bheads"]
        mean, log_var = out[:, :2], out[:, 2:]
        z = mean + jnp.exp(0.5 * log_var) * jax.random.normal(key, mean.shape)
        h = jax.nn.relu(z @ p["d2"] + p["bd2"]).reshape(-1, 7, 7, 64)
        logits = conv_t(p, jax.nn.relu(conv_t(p, jax.nn.relu(conv_t(p, h, "t1", 2)), "t2", 2)), "t3", 1)
        bce = jnp.maximum(logits, 0) - logits * x + jnp.log1p(jnp.exp(-jnp.abs(logits)))
        kl = -0.5 * jnp.sum(1 + log_var - mean**2 - jnp.exp(log_var), axis=1)
        return jnp.mean(jnp.sum(bce, axis=(1, 2, 3))) + jnp.mean(kl)

    step, state = jax_adam_trainer(loss_fn, params)
    batches = itertools.cycle([jnp.asarray(b) for b in np.split(data(), len(data()) // BATCH)])
    return run_stateful(step, state, batches, steps)


CONFIGS = {
    "kgen-tensorflow-nojit": ("tensorflow", "kgen", False),
    "kgen-tensorflow-jit": ("tensorflow", "kgen", True),
    "kgen-jax-jit": ("jax", "kgen", True),
    "kgen-jax-nojit": ("jax", "kgen", False),
    "kgen-torch-nojit": ("torch", "kgen", False),
    "kgen-torch-jit": ("torch", "kgen", True),
    "ref-keras-io": ("tensorflow", "keras-io", None),
    "ref-tf-tape-loop": ("tensorflow", "tape", None),
    "ref-jax": ("jax", "jax", None),
    "ref-pytorch": ("torch", "pytorch", None),
}

# The hand-written loop each backend's kgen step is judged against (the target is >= 1.0x).
SAME_BACKEND_REFERENCE = {"tensorflow": "ref-keras-io", "jax": "ref-jax", "torch": "ref-pytorch"}


def measure_vae(name: str, steps: int) -> float:
    backend, kind, jit = CONFIGS[name]
    return measure(backend, "train_throughput", kind, steps, jit)


def run_worker(kind: str, steps: int, jit):
    if kind == "kgen":
        eager_jax = os.environ["KERAS_BACKEND"] == "jax" and jit is False
        return worker_kgen(max(steps // 6, 5) if eager_jax else steps, jit)  # eager JAX is slow: fewer steps
    workers = {"keras-io": worker_keras_io, "tape": worker_tape_loop, "jax": worker_jax, "pytorch": worker_pytorch}
    return workers[kind](steps)


def vae_suite(args) -> dict:
    only = args.only or list(CONFIGS)
    results: dict[str, list[float]] = {name: [] for name in only}
    gemm = []
    for round_ in range(args.rounds):
        gemm.append(sgemm_gflops())
        for name in only:  # interleaved: every config once per round
            results[name].append(measure_vae(name, args.steps))
            print(f"round {round_ + 1}: {name:24s} {results[name][-1]:8.0f} samples/s", file=sys.stderr)

    ceiling = max(gemm)
    flops = train_flops_per_sample()
    best = {name: max(values) for name, values in results.items()}
    print(f"\nconv VAE (keras-io), batch {BATCH}, {flops / 1e6:.1f} MFLOP per training sample; "
          f"numpy sgemm ceiling {ceiling:.0f} GFLOP/s; best of {args.rounds} interleaved rounds\n")
    print(f"| {'config':24s} | samples/s | GFLOP/s | % of sgemm | vs same-backend reference | vs ref-keras-io |")
    print("|---|---|---|---|---|---|")
    for name, value in best.items():
        gflops = value * flops / 1e9
        own = SAME_BACKEND_REFERENCE[CONFIGS[name][0]]
        vs_own = f"{value / best[own]:.2f}x ({own})" if own in best else "-"
        vs_keras_io = f"{value / best['ref-keras-io']:.2f}x" if "ref-keras-io" in best else "-"
        print(f"| {name:24s} | {value:9.0f} | {gflops:7.1f} | {100 * gflops / ceiling:9.1f}% | {vs_own} | {vs_keras_io} |")
    return {"samples_per_s": results, "sgemm_gflops": gemm, "mflop_per_sample": flops / 1e6}


def kgen_vs_reference(module: str, models: list, backends: list, args, has_reference=lambda model: True) -> dict:
    """``module``'s kgen and reference workers for every model and backend, interleaved round by round:
    {"model/backend/kgen" or ".../reference": [samples/s per round]}."""
    runs = [(model, backend, impl) for model in models for backend in backends
            for impl in (("kgen", "reference") if has_reference(model) else ("kgen",))]
    results: dict[str, list[float]] = {"/".join(run): [] for run in runs}
    for round_ in range(args.rounds):
        for model, backend, impl in runs:  # interleaved: every config once per round
            key = "/".join((model, backend, impl))
            results[key].append(measure(backend, module, impl, model, args.steps))
            print(f"round {round_ + 1}: {key:48s} {results[key][-1]:9.0f} samples/s", file=sys.stderr)
    return results


def ratio_table(models: list, backends: list, best: dict) -> None:
    """| model | per backend: kgen | reference | kgen / reference |, from the best samples/s of each run."""
    print("| model | " + " | ".join(f"{b} kgen | {b} reference | {b} ratio" for b in backends) + " |")
    print("|---|" + "---|---|---|" * len(backends))
    for model in models:
        cells = []
        for backend in backends:
            kgen, ref = best.get(f"{model}/{backend}/kgen"), best.get(f"{model}/{backend}/reference")
            cells += [f"{kgen:.0f}", f"{ref:.0f}" if ref else "-", f"{kgen / ref:.2f}x" if ref else "-"]
        print(f"| {model} | " + " | ".join(cells) + " |")


def ae_family_suite(args) -> dict:
    import ae_family

    models = args.only or list(ae_family.SPECS)
    backends = args.backends
    results = kgen_vs_reference("ae_family", models, backends, args, lambda model: ae_family.SPECS[model].reference)
    best = {key: max(values) for key, values in results.items()}
    print(f"\nautoencoder family and RBM, batch {BATCH}, samples/s (best of {args.rounds} interleaved rounds); "
          "kgen / hand-written reference of the same network on the same backend\n")
    ratio_table(models, backends, best)
    plain, closed = "shallow_ae (no penalty)", "contractive_ae closed-form"
    if {plain, "contractive_ae"} <= set(models):
        print("\ncontractive penalty, step time relative to the plain shallow AE (same 784-64-784 network):")
        for backend in backends:
            base = best[f"{plain}/{backend}/kgen"]
            line = f"  {backend}: autodiff {base / best[f'contractive_ae/{backend}/kgen']:.2f}x"
            if closed in models:
                line += f", closed form {base / best[f'{closed}/{backend}/kgen']:.2f}x"
            print(line)
    return {"samples_per_s": results}


def spec_suite(module_name: str, description: str, args) -> dict:
    """kgen vs reference for the models of a benchmark module with a SPECS table (gan.py, aae.py)."""
    import importlib

    specs = importlib.import_module(module_name).SPECS
    models = args.only or list(specs)
    if set(models) - set(specs):
        raise SystemExit(f"--only: the {module_name} suite runs {', '.join(specs)}")
    results = kgen_vs_reference(module_name, models, args.backends, args)
    best = {key: max(values) for key, values in results.items()}
    print(f"\n{description}, best of {args.rounds} interleaved rounds; kgen / hand-written reference of the same "
          "networks and steps on the same backend\n")
    ratio_table(models, args.backends, best)
    return {"samples_per_s": results}


def gan_suite(args) -> dict:
    return spec_suite("gan", f"DCGAN and WGAN-GP (28x28x1, latent 100, width 64), batch {BATCH}, samples/s = real "
                      "images consumed per second (one generator step per batch, after 1 D step for dcgan, 5 critic "
                      "steps for wgan_gp)", args)


def aae_suite(args) -> dict:
    return spec_suite("aae", f"adversarial autoencoders (dense 784-512-8 encoder and decoder, code discriminators "
                      f"512-256-1), batch {BATCH}, samples/s = images per second (one step of each phase per batch: "
                      "reconstruction, discriminator, generator, and classification for the semi-supervised model)",
                      args)


SUITES = {"vae": (vae_suite, 60), "ae-family": (ae_family_suite, 60), "gan": (gan_suite, 64),
          "aae": (aae_suite, 128)}  # suite, default --steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suite", choices=tuple(SUITES), default="vae")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--steps", type=int, default=None, help="timed steps per measurement "
                        "(default: " + ", ".join(f"{name} {steps}" for name, (_, steps) in SUITES.items()) + ")")
    parser.add_argument("--only", nargs="*", default=None, help="configs (vae) or models (ae-family, gan) to run")
    parser.add_argument("--backends", nargs="*", default=["tensorflow", "jax", "torch"],
                        choices=("tensorflow", "jax", "torch"), help="ae-family, gan: backends to run")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    suite, default_steps = SUITES[args.suite]
    args.steps = default_steps if args.steps is None else args.steps
    result = suite(args)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
