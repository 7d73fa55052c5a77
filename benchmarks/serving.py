"""Serving speed: a `kgen export` signature loaded with tf.saved_model.load against the Keras model.

For each model below (kgen's default networks for 28x28x1, untrained: the cost does not depend
on the weights), a run directory is written, exported with ``kgen.export.export``, and then, in
this one process on the TensorFlow backend, the model's serving_default is timed three ways:

  savedmodel  ``tf.saved_model.load(path).signatures[SIG](**inputs)``: the concrete function TF
              Serving runs (minus its RPC), outputs converted to numpy
  predict     ``model.predict(x, batch_size=len(x))``: Keras's inference loop on the same inputs
              (the model's call(): reconstruct for autoencoders, generate for GANs, logits for the
              classifier), as a user of the Keras model would serve it
  on_batch    ``model.predict_on_batch(x)``: the same compiled predict function without the loop
              (no data adapter, iterator or callbacks per call): Keras's leanest path
  call        the model's method called directly (``model.reconstruct(x)``, ``model.generate(z)``,
              ``model.predict_proba(x)``): eager TensorFlow, outputs converted to numpy

latency: median milliseconds per call at batch 1 (``--calls`` calls); throughput: samples/s at
batch 256 (``--calls`` // 4 calls). Each figure is the best of ``--rounds`` rounds (the machine is
shared; the best round is the least disturbed). "vs predict" is predict's time over the
SavedModel's, "vs best" the fastest Keras way's (predict, on_batch or call) over the SavedModel's:
above 1, the export is faster.

    python benchmarks/serving.py                       # ae, vae (conv), dcgan, classifier
    python benchmarks/serving.py --models ae dcgan --rounds 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

os.environ["KERAS_BACKEND"] = "tensorflow"  # the SavedModel and the Keras model in one process
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

SHAPE = (28, 28, 1)
# name -> (kgen model, model options, the method serving_default calls)
MODELS = {
    "ae": ("ae", {}, "reconstruct"),
    "vae-conv": ("vae", {"arch": "conv"}, "reconstruct"),
    "dcgan": ("dcgan", {}, "generate"),
    "classifier": ("classifier", {"num_classes": 10}, "predict_proba"),
}
LATENCY_BATCH, THROUGHPUT_BATCH = 1, 256


def make_run(root: Path, name: str) -> Path:
    """A run directory (config.json + model.keras) of a freshly built model: all that export reads."""
    import keras

    import kgen
    from kgen.models import get_model_class
    from kgen.runs import Run
    from kgen.train import TrainConfig, build_model

    model_name, options, _ = MODELS[name]
    config = TrainConfig(model=model_name, dataset="bench", model_options=dict(options))
    config.validate()
    model = build_model(config, SHAPE, get_model_class(model_name).data_range)
    run = Run(root / name)
    run.path.mkdir(parents=True)
    run.write_config({**asdict(config), "backend": keras.backend.backend(), "kgen_version": kgen.__version__})
    model.save(run.model_path)
    return run.path


def best_of(rounds: int, measure) -> float:
    return min(measure() for _ in range(rounds))


def seconds_per_call(fn, x, calls: int, warmup: int = 5) -> float:
    """Median wall time of ``fn(x)`` over ``calls`` calls (after ``warmup``)."""
    for _ in range(warmup):
        fn(x)
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench(name: str, root: Path, calls: int, rounds: int) -> dict:
    import tensorflow as tf
    from keras import ops

    from kgen.export import export
    from kgen.train import load_model

    run = make_run(root, name)
    result = export(run, out=root / "saved_models")
    signature = result.signatures[0]
    (key, (shape, _)), = signature.inputs.items()
    fn = tf.saved_model.load(str(result.path)).signatures[signature.name]
    model = load_model(run)
    method = getattr(model, MODELS[name][2])
    rng = np.random.default_rng(0)
    out = {"signature": signature.name, "jit": getattr(model, "jit_compile", None)}
    for label, batch, n in (("latency", LATENCY_BATCH, calls), ("throughput", THROUGHPUT_BATCH, max(8, calls // 4))):
        x = rng.random((batch, *shape[1:])).astype("float32")
        if key == "latent":
            x = rng.standard_normal(x.shape).astype("float32")
        ways = {
            "savedmodel": lambda v: {k: t.numpy() for k, t in fn(**{key: tf.constant(v)}).items()},
            "predict": lambda v: model.predict(v, batch_size=len(v), verbose=0),
            "on_batch": lambda v: model.predict_on_batch(v),
            "call": lambda v: ops.convert_to_numpy(method(v)),
        }
        for way, call in ways.items():
            seconds = best_of(rounds, lambda: seconds_per_call(call, x, n))
            out[f"{label}_{way}"] = seconds * 1e3 if label == "latency" else batch / seconds
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--calls", type=int, default=200, help="batch-1 calls per round (batch 256: a quarter)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    import tensorflow as tf

    print(f"TensorFlow {tf.__version__}, {os.cpu_count()} CPU cores, best of {args.rounds} rounds. "
          "vs predict / vs best: predict's / the fastest Keras way's time over the SavedModel's (above 1: export faster)")
    ways = ("savedmodel", "predict", "on_batch", "call")
    for label, unit, fmt in (("latency", "batch 1, ms per call", "{:>10.3f}"),
                             ("throughput", "batch 256, samples/s", "{:>10,.0f}")):
        print(f"\n{unit}")
        print(f"{'model':<11} {'signature':<12}" + "".join(f"{w:>11}" for w in ways) + f"{'vs predict':>12}{'vs best':>9}")
        for name, r in results(args).items():
            times = {w: r[f"{label}_{w}"] if label == "latency" else 1.0 / r[f"{label}_{w}"] for w in ways}
            best = min(times[w] for w in ways[1:])
            print(f"{name:<11} {r['signature']:<12}" + "".join(" " + fmt.format(r[f"{label}_{w}"]) for w in ways)
                  + f"{times['predict'] / times['savedmodel']:>11.1f}x{best / times['savedmodel']:>8.2f}x", flush=True)


_RESULTS: dict = {}


def results(args) -> dict:
    """Measure once (both tables print from the same measurements)."""
    if not _RESULTS:
        with tempfile.TemporaryDirectory(prefix="kgen-serving-") as tmp:
            for name in args.models:
                _RESULTS[name] = bench(name, Path(tmp), args.calls, args.rounds)
    return _RESULTS


if __name__ == "__main__":
    main()
