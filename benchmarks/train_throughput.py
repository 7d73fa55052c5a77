"""Training throughput of kgen's conv VAE against hand-written references (the ``vae`` suite).

Network: the keras-io "Variational AutoEncoder" (28x28x1, conv 32/64 stride 2,
Dense 16, 2-D latent, transposed convs back), binary cross-entropy summed over
pixels + closed-form KL. Implementations (``benchmarks/bench.py`` measures them
interleaved, round by round):

  kgen       kgen's VAE through ``model.fit`` (the phased core), built as ``kgen train`` builds it
  keras      the same networks as a Keras model with a hand-written train_step on the same backend
             (``benchmarks/reference.py``: GradientTape on TensorFlow, value_and_grad + stateless_apply
             on JAX, backward + optimizer.apply on torch): the bar, kgen / keras >= 1.0
  keras-io   keras-io's VAE as published (TensorFlow, float32, default compile): the cross-backend reference
  plain      the framework's own loop, for information: a bare tf.function + GradientTape loop
             (tensorflow), plain JAX with lax convolutions (jax), plain PyTorch (torch)

This file keeps the old entry point: ``python benchmarks/train_throughput.py`` is ``benchmarks/bench.py``
(``--suite vae`` by default; ``--suite ae-family|gan|aae`` for the other suites).
"""

from __future__ import annotations

import itertools

import harness
import numpy as np
import reference
from harness import data, jax_adam_trainer, pipeline, run_stateful, time_fit, timed

MODELS = ["vae_conv"]
WARMUP = 5
LEARNING_RATE = 1e-3


def warmup() -> int:
    return harness.warmup(WARMUP)


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


# -- workers (one per process) ------------------------------------------------------
def worker_kgen(name: str, steps: int, jit=None) -> float:
    import keras

    if keras.backend.backend() == "jax" and jit is False:
        steps = max(steps // 6, 5)  # eager JAX is slow: fewer steps
    model = harness.kgen_model("vae", {"arch": "conv", "latent_dim": 2, "hidden": 16}, LEARNING_RATE, jit,
                               steps=(warmup(), steps))
    return time_fit(model, pipeline(), steps, warmup())


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


def vae_loss(model, x):
    """keras-io's VAE loss (sigmoid decoder output, keras binary_crossentropy summed over pixels, KL),
    in keras.ops: the phase of the same-framework references on every backend."""
    import keras
    from keras import ops

    z_mean, z_log_var = model.net("encoder", x)
    eps = keras.random.normal(ops.shape(z_mean), seed=model.seed_generator)
    reconstruction = model.net("decoder", z_mean + ops.exp(0.5 * z_log_var) * eps)
    rec = ops.mean(ops.sum(keras.losses.binary_crossentropy(x, reconstruction), axis=(1, 2)))
    kl = ops.mean(ops.sum(-0.5 * (1 + z_log_var - ops.square(z_mean) - ops.exp(z_log_var)), axis=1))
    return rec + kl


def worker_keras(name: str, steps: int, jit=None) -> float:
    """keras-io's networks and loss as a Keras model with a hand-written train_step on this backend."""
    import keras

    def networks():
        encoder, decoder = _keras_io_networks(sigmoid_output=True)
        return {"encoder": encoder, "decoder": decoder}

    phases = [reference.Phase("vae", ("encoder", "decoder"), vae_loss)]
    return reference.fit(networks, phases, lambda: {"vae": keras.optimizers.Adam(LEARNING_RATE)}, pipeline(),
                         steps, warmup(), jit)


def worker_keras_io(name: str, steps: int) -> float:
    """keras-io's VAE as published: a keras.Model whose train_step uses tf.GradientTape,
    sigmoid decoder output + keras binary_crossentropy, loss trackers, trained by fit()
    with Keras's default compile options; always float32."""
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

    with harness.dtype_policy("float32"):
        model = KerasIoVAE()
        model.compile(optimizer=keras.optimizers.Adam(LEARNING_RATE))
    return time_fit(model, pipeline(), steps, warmup())


def worker_tape_loop(name: str, steps: int) -> float:
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

    return timed(step, iter(pipeline()), steps, float, warmup())


def worker_pytorch(name: str, steps: int) -> float:
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

    batch = harness.batch_size()
    batches = itertools.cycle([x_all[i : i + batch] for i in range(0, len(x_all), batch)])
    return timed(step, batches, steps, float, warmup())


def worker_jax(name: str, steps: int) -> float:
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
    images = data()
    batches = itertools.cycle([jnp.asarray(b) for b in np.split(images, len(images) // harness.batch_size())])
    return run_stateful(step, state, batches, steps, warmup())


# The framework's own loop on each backend (for information).
PLAIN = {"tensorflow": worker_tape_loop, "jax": worker_jax, "torch": worker_pytorch}


def has_reference(name: str) -> bool:
    return True


def main(argv=None) -> None:
    import bench

    bench.main(argv, default_suites=["vae"])


if __name__ == "__main__":
    main()
