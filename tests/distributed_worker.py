"""The training runs tests/test_distributed.py compares, in a subprocess or in the test process.

A distributed run has to configure its devices before TensorFlow/JAX start, so it runs here in a
fresh process: ``python tests/distributed_worker.py --out DIR --init FILE [--devices N]
[--coordinator ... --num-processes P --process-id p]``. Each case builds a tiny model, loads the
initial values the test wrote (so every run starts from the same point), trains one global batch,
then two more (with validation), and saves every variable (model and every phase optimizer's
slots and iterations) after each, with the logs fit() returned. ``train_case`` is also what the
test calls for the single-device reference.

The noise of the GAN and the AAE is replaced by a fixed function of each example (``batch_noise``):
a single device and R replicas then draw the same noise for the same example, so their steps must
agree exactly. The models' real noise is checked separately (``noise_draws``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

GLOBAL_BATCH = 8
SHAPE = (8, 8, 1)
CASES = ("ae", "gan", "aae", "gan-real")
FIRST_STEPS, MORE_STEPS = 1, 2
LEARNING_RATE = 1e-2  # large, so that a missing or doubled all-reduce shows in every variable


@contextlib.contextmanager
def float64():
    """Every run computes in float64 (Keras's floatx; JAX's x64 mode).

    The property is exact in real arithmetic; float32 would add rounding differences between
    summing a batch's gradient in one piece and in R pieces, which reach 1e-5 relative in variables
    whose gradient is a difference of nearly equal terms (the AAE's discriminators after one step).
    In float64 they are ~1e-12, so any real difference (a missing, doubled or wrong all-reduce, a
    wrong slice of the batch) stands out at the 1e-5 tolerance."""
    import keras

    # Keras pins its global dtype policy to floatx when the first layer of a process is made: in a
    # process that already built float32 layers, set_floatx alone would leave new layers in float32.
    previous, previous_policy = keras.config.floatx(), keras.config.dtype_policy()
    keras.config.set_floatx("float64")
    keras.config.set_dtype_policy("float64")
    if keras.backend.backend() == "jax":
        import jax

        x64 = jax.enable_x64(True)
    else:
        x64 = contextlib.nullcontext()
    try:
        with x64:
            yield
    finally:
        keras.config.set_floatx(previous)
        keras.config.set_dtype_policy(previous_policy)


def data(case: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x, y) for training (3 global batches) and validation (2 batches), in the model's range."""
    rng = np.random.default_rng(7)
    n = (FIRST_STEPS + MORE_STEPS) * GLOBAL_BATCH
    x = rng.random((n + 2 * GLOBAL_BATCH, *SHAPE))  # float64, as the models compute
    if case.startswith("gan"):
        x = 2.0 * x - 1.0
    y = rng.integers(0, 3, len(x)).astype("int32")
    return x[:n], y[:n], x[n:], y[n:]


def _projection(inputs: int, outputs: int, seed: int):
    return np.random.default_rng(seed).normal(size=(inputs, outputs)) / np.sqrt(inputs)


@contextlib.contextmanager
def batch_noise():
    """While active, the GAN's z and the AAE's prior draws are fixed functions of the batch's examples.

    The phase losses record their batch; ``sample_latent`` / ``sample_prior`` / ``priors.categorical``
    then map each example x to tanh(P x) (a fixed projection P) instead of drawing noise. The record
    is per thread: MirroredStrategy traces each replica's step in its own thread.
    """
    import threading

    from keras import ops

    from kgen.models import AAE, GAN, priors
    from kgen.models.base import batch_inputs

    stash = threading.local()

    def noise_of_batch(n, width, seed):
        batch = stash.batch
        features = int(np.prod(batch.shape[1:]))
        x = ops.reshape(batch, (-1, features))  # n rows, one per example
        return ops.tanh(ops.matmul(x, ops.convert_to_tensor(_projection(features, width, seed))))

    def recording(loss):
        def wrapped(self, data, training):
            stash.batch = batch_inputs(data)
            try:
                return loss(self, data, training)
            finally:
                stash.batch = None
        return wrapped

    def active(seed=None):
        return seed is None and getattr(stash, "batch", None) is not None

    def gan_latent(self, n, seed=None):
        return noise_of_batch(n, self.latent_dim, 1) if active(seed) else original["gan_latent"](self, n, seed)

    def aae_prior(self, n, labels=None, seed=None):
        return noise_of_batch(n, self.latent_dim, 2) if active(seed) else original["aae_prior"](self, n, labels, seed)

    def categorical(n, categories, seed=None):
        if not active():
            return original["categorical"](n, categories, seed)
        return ops.one_hot(ops.argmax(noise_of_batch(n, categories, 3), axis=-1), categories)

    original = {"gan_latent": GAN.sample_latent, "aae_prior": AAE.sample_prior, "categorical": priors.categorical,
                "gan_d": GAN.discriminator_loss, "gan_g": GAN.generator_loss, "aae_d": AAE.discriminator_loss}
    GAN.sample_latent, AAE.sample_prior, priors.categorical = gan_latent, aae_prior, categorical
    GAN.discriminator_loss, GAN.generator_loss = recording(original["gan_d"]), recording(original["gan_g"])
    AAE.discriminator_loss = recording(original["aae_d"])
    try:
        yield
    finally:
        GAN.sample_latent, AAE.sample_prior, priors.categorical = (
            original["gan_latent"], original["aae_prior"], original["categorical"])
        GAN.discriminator_loss, GAN.generator_loss = original["gan_d"], original["gan_g"]
        AAE.discriminator_loss = original["aae_d"]


def build(case: str):
    """The tiny model of a case (not compiled)."""
    from kgen.models import AAE, AE, GAN

    if case == "ae":
        return AE(SHAPE, seed=0, hidden=16, latent_dim=4)
    if case in ("gan", "gan-real"):
        return GAN(SHAPE, seed=0, width=8, latent_dim=4, d_steps=2)
    if case == "aae":
        return AAE(SHAPE, seed=0, mode="semi-supervised", num_classes=3, labels="all", hidden=16, disc_width=8,
                   latent_dim=2)
    raise ValueError(case)


def state_variables(model) -> list:
    """Every variable a replica holds, in a fixed order: the model's, then every optimizer's."""
    return list(model.variables) + list(model.optimizer.variables)


def numpy_of(variables) -> list[np.ndarray]:
    import keras

    return [np.asarray(keras.ops.convert_to_numpy(v.value)).copy() for v in variables]


def inconsistent_copies(variables) -> list[str]:
    """Paths of the variables whose copies on this process's devices differ (seed states may)."""
    bad = []
    for v in variables:
        if v.path.endswith("seed_generator_state"):
            continue
        value = v.value
        copies = getattr(value, "values", None)  # TF mirrored variable: its per-device copies
        if not isinstance(copies, (tuple, list)):
            copies = None
        if copies is None and hasattr(value, "addressable_shards"):  # JAX array
            copies = [s.data for s in value.addressable_shards]
        if not copies or len(copies) < 2:
            continue
        first = np.asarray(copies[0])
        if any(not np.array_equal(first, np.asarray(c)) for c in copies[1:]):
            bad.append(v.path)
    return bad


def train_case(case: str, distribution, initial: list[np.ndarray], steps_per_execution: int = 1) -> dict:
    """Load ``initial``, train FIRST_STEPS then MORE_STEPS global batches; states and logs after each.

    ``steps_per_execution`` > 1: JAX runs the steps in one compiled call (TensorFlow under
    tf.distribute and torch run 1, see Distribution.max_steps_per_execution)."""
    import tensorflow as tf

    x, y, vx, vy = data(case)
    noise = contextlib.nullcontext() if case == "gan-real" else batch_noise()

    def batches(first, count, xs, ys):
        ds = tf.data.Dataset.from_tensor_slices((xs, ys)).skip(first * GLOBAL_BATCH).take(count * GLOBAL_BATCH)
        return distribution.distribute_dataset(ds.batch(GLOBAL_BATCH), GLOBAL_BATCH)

    with noise:
        with distribution.scope():
            model = build(case)
            model.compile(learning_rate=LEARNING_RATE, steps_per_execution=steps_per_execution)
            for v, value in zip(state_variables(model), initial, strict=True):
                v.assign(value)
        distribution.prepare(model)
        first = model.fit(batches(0, FIRST_STEPS, x, y), epochs=1, verbose=0, shuffle=False).history
        after_first = numpy_of(state_variables(model))
        more = model.fit(batches(FIRST_STEPS, MORE_STEPS, x, y), epochs=1, verbose=0, shuffle=False,
                         validation_data=batches(0, 2, vx, vy)).history
        after_more = numpy_of(state_variables(model))
    logs = {"first": {k: float(v[-1]) for k, v in first.items()},
            "more": {k: float(v[-1]) for k, v in more.items()}}
    return {"first": after_first, "more": after_more, "logs": logs, "paths": [v.path for v in state_variables(model)],
            "inconsistent": inconsistent_copies(state_variables(model)), "model": model}


def initial_values(case: str) -> list[np.ndarray]:
    """A fresh model's variables and (built, zero) optimizer state, the start of every run of ``case``."""
    model = build(case)
    model.compile(learning_rate=LEARNING_RATE)
    return numpy_of(state_variables(model))


def noise_draws(model, distribution) -> np.ndarray:
    """What each replica of this process draws from the model's real z ~ N(0, I): (local replicas, 4, d)."""
    if distribution.kind in ("tf-mirrored", "tf-multi-worker"):
        import tensorflow as tf

        per_replica = distribution.engine.run(tf.function(lambda: model.sample_latent(4)))
        return np.stack([np.asarray(t) for t in distribution.engine.experimental_local_results(per_replica)])
    import keras

    return np.asarray(keras.ops.convert_to_numpy(model.sample_latent(4)))[None]


def save(path: Path, result: dict) -> None:
    arrays = {f"first_{i}": a for i, a in enumerate(result["first"])}
    arrays.update({f"more_{i}": a for i, a in enumerate(result["more"])})
    np.savez(path.with_suffix(".npz"), **arrays)
    path.with_suffix(".json").write_text(json.dumps({k: result[k] for k in ("logs", "inconsistent", "info", "paths")}))


def load(path: Path) -> dict:
    arrays = np.load(path.with_suffix(".npz"))
    count = sum(1 for k in arrays.files if k.startswith("first_"))
    meta = json.loads(path.with_suffix(".json").read_text())
    return {"first": [arrays[f"first_{i}"] for i in range(count)],
            "more": [arrays[f"more_{i}"] for i in range(count)], **meta}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--init", required=True, help="npz of each case's initial values (written by the test)")
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--devices", type=int, default=None, help="split the CPU into this many devices")
    parser.add_argument("--coordinator", default=None)
    parser.add_argument("--num-processes", type=int, default=None)
    parser.add_argument("--process-id", type=int, default=None)
    parser.add_argument("--steps-per-execution", type=int, default=1)
    args = parser.parse_args()

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from kgen.backend import distribution as kgen_distribution

    if args.devices:
        kgen_distribution.virtual_cpu_devices(args.devices)
    distribution = kgen_distribution.configure(args.devices, args.coordinator, args.num_processes,
                                               args.process_id, timeout=120)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    initial = np.load(args.init)
    with float64():
        run_cases(args, distribution, initial, out)
    distribution.barrier()
    distribution.shutdown()
    print("worker done", distribution.describe(), flush=True)


def run_cases(args, distribution, initial, out: Path) -> None:
    for case in args.cases.split(","):
        values = [initial[f"{case}_{i}"] for i in range(sum(1 for k in initial.files if k.startswith(case + "_")))]
        result = train_case(case, distribution, values, args.steps_per_execution)
        result["info"] = {"kind": distribution.kind, "replicas": distribution.num_replicas,
                          "process": distribution.process_index, "processes": distribution.num_processes}
        if case == "gan-real":
            np.save(out / f"noise-{distribution.process_index}.npy", noise_draws(result["model"], distribution))
        save(out / f"{case}-{distribution.process_index}", result)


if __name__ == "__main__":
    main()
