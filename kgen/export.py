"""`kgen export`: a run's model as a TensorFlow SavedModel that TF Serving loads.

    saved_models/<name>/<version>/           what `tensorflow_model_server --model_base_path=saved_models/<name>`
        saved_model.pb, variables/           serves: tag "serve", one signature per capability of the model
        assets.extra/kgen.json               where it came from (run, model, signatures); read by `kgen export --list`
        assets.extra/requests/<sig>.json     a ready REST body for each signature
        assets.extra/tf_serving_warmup_requests   with --warmup: one PredictionLog per signature

Signatures are chosen by what the model can do (its abilities, see ``CAPABILITIES``), not by
its class, so a new model family gets the signatures its methods allow without changes here.
Every signature has a dynamic batch dimension and float32 data; images go in and come out in
[0, 1] NHWC whatever range the model works in (GANs: [-1, 1]); data the model saw as unbounded
("real" range) go in and out as they were in training.

The SavedModel always comes from a TensorFlow-backend process: a run trained on JAX or PyTorch
is reloaded from its (backend-neutral) model.keras under KERAS_BACKEND=tensorflow in a
subprocess. The torch backend cannot write SavedModels, and JAX's are XlaCallModule ops that
TF Serving builds do not all run; this way every export holds native TensorFlow ops, and
``check_ops`` refuses any PyFunc, XlaCallModule or op a plain TensorFlow does not register.

A version is written to a hidden temporary folder beside the versions (TF Serving ignores
non-numeric names), checked, then renamed into place: a polling server never sees half of it,
and a failure leaves no version folder. It is published with the modes a plain mkdir and file get
under the umask (TF Serving often runs as another user). Whatever stops an export (a failure, a
full disk, Ctrl-C, SIGTERM) leaves nothing of it behind: its child processes are killed and
reaped, then its temporary folders, the model folders it created and its scratch folder are
removed (``_Signals``, ``_run_child``, ``_writing``); a child whose parent died without cleaning
up (SIGKILL) ends itself (``PARENT_WATCH``).
"""

from __future__ import annotations

import errno
import importlib.util
import inspect
import json
import os
import re
import secrets
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

import kgen
from kgen.runs import Run, RunError, slug

DEFAULT_OUT = "saved_models"
# --check: max |SavedModel - Keras| over every output, and the batch sizes every signature runs at.
# Absolute for outputs within [-1, 1] (images, probabilities); relative to the largest value beyond
# (codes): JAX/PyTorch and TensorFlow sum a matmul in different orders, a float32 rounding of ~1e-7
# of the magnitude, which an absolute bound would turn into false alarms on codes of size 100.
TOLERANCE = 1e-5
CHECK_BATCHES = (1, 7, 64)
# `sample` references are drawn one seed at a time (an RBM runs a whole Gibbs chain per seed).
SAMPLE_REFERENCES = 8
# Ops that need a Python interpreter or a JAX/XLA runtime TF Serving may lack.
FORBIDDEN_OPS = frozenset({"PyFunc", "PyFuncStateless", "EagerPyFunc", "XlaCallModule"})
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
NO_SERVING_API = ("--warmup needs the tensorflow-serving-api package: pip install --no-deps tensorflow-serving-api "
                  "(with its dependencies it would install the `tensorflow` package over tensorflow-cpu; "
                  "`make setup` installs it this way)")
META_FILE = "assets.extra/kgen.json"
REQUESTS_DIR = "assets.extra/requests"
WARMUP_FILE = "assets.extra/tf_serving_warmup_requests"


class ExportError(ValueError):
    """Bad input (run, name, version, output folder, signature); the message is for the user."""


class ExportFailed(RuntimeError):
    """The export was written but is wrong (forbidden ops, outputs that differ from Keras)."""


# -- signatures ---------------------------------------------------------------------------
@dataclass
class Signature:
    """One SavedModel signature: input and output names -> (shape with None batch, dtype)."""

    name: str
    inputs: dict[str, tuple[tuple[int | None, ...], str]]
    outputs: dict[str, tuple[tuple[int | None, ...], str]] = field(default_factory=dict)
    image: str | None = None  # the output holding images in [0, 1] (gets png_bytes with --png)


def _bounds(model) -> tuple[float, float] | None:
    from kgen.models.base import DATA_BOUNDS

    return DATA_BOUNDS.get(model.hparams["data_range"])


def from_unit(model, x):
    """[0, 1] images -> the model's data range ([-1, 1] for GANs); unbounded data pass as they are."""
    bounds = _bounds(model)
    return x if bounds in (None, (0.0, 1.0)) else bounds[0] + x * (bounds[1] - bounds[0])


def to_unit(model, y):
    """The model's data range -> [0, 1]; unbounded data pass as they are."""
    bounds = _bounds(model)
    return y if bounds in (None, (0.0, 1.0)) else (y - bounds[0]) / (bounds[1] - bounds[0])


def takes_condition(model, method: str) -> bool:
    """A signature takes a ``label`` when the model is conditional and the method has a condition."""
    from kgen.models import Ability, can

    return can(model, Ability.CONDITIONAL) and "condition" in inspect.signature(getattr(model, method)).parameters


def _with_condition(method, x, condition):
    return method(x) if condition is None else method(x, condition=condition)


# Each capability: the methods it needs, its inputs (besides a label) and the backend-neutral
# function of the signature: (model, inputs, condition) -> named outputs. The order is the
# order of the signatures; the first one present is serving_default.
#
#   model has                     signature     inputs (+ label)    outputs
#   reconstruct                   reconstruct   images              reconstruction
#   encode                        encode        images              code, or encode_output_names (vae: mean, log_var)
#   decode (+ encode: code size)  decode        code                images
#   generate + sample_latent      generate      latent              images
#   sample                        sample        seed (int64)        images (+ latent when it has sample_latent)
#   predict_proba                 classify      images              probabilities, label (int64, the argmax)
def _reconstruct(model, inputs, condition):
    x = from_unit(model, inputs["images"])
    return {"reconstruction": to_unit(model, _with_condition(model.reconstruct, x, condition))}


def _encode(model, inputs, condition):
    codes = model.encode(from_unit(model, inputs["images"]))
    if not isinstance(codes, (tuple, list)):
        return {"code": codes}
    names = model.encode_output_names or [f"code_{i}" for i in range(len(codes))]
    return dict(zip(names, codes))


def _decode(model, inputs, condition):
    return {"images": to_unit(model, _with_condition(model.decode, inputs["code"], condition))}


def _generate(model, inputs, condition):
    return {"images": to_unit(model, model.generate(inputs["latent"], condition))}


def _classify(model, inputs, condition):
    from keras import ops

    probabilities = model.predict_proba(from_unit(model, inputs["images"]))
    # int32 here (JAX has no int64 by default); the graph's output is int64 (``Signature.outputs``).
    return {"probabilities": probabilities, "label": ops.cast(ops.argmax(probabilities, axis=-1), "int32")}


def _sample_reference(model, inputs, condition):
    """``sample`` one seed at a time, as kgen draws it: ``model.sample(1, seed=s)``, so seed s
    gives the same image whatever else is in the batch. (Eager only; the export has its own graph.)"""
    from keras import ops

    images, latents = [], []
    labels = inputs.get("label")
    for i, seed in enumerate(np.asarray(inputs["seed"]).tolist()):
        kwargs = {} if labels is None else {"labels": np.asarray(labels)[i : i + 1]}
        images.append(ops.convert_to_numpy(model.sample(1, seed=int(seed), **kwargs))[0])
        if _has(model, "GENERATE"):
            latents.append(ops.convert_to_numpy(model.sample_latent(1, seed=int(seed)))[0])
    out = {"images": to_unit(model, np.stack(images))}
    if latents:
        out["latent"] = np.stack(latents)
    return out


def _code_shape(model) -> tuple[int, ...]:
    codes = _encode(model, {"images": np.zeros((1, *model.data_shape), "float32")}, None)
    return tuple(np.shape(next(iter(codes.values())))[1:])


def _latent_shape(model) -> tuple[int, ...]:
    return tuple(np.shape(model.sample_latent(1, seed=0))[1:])


def _images(model):
    return {"images": ((None, *model.data_shape), "float32")}


def _has(model, *names: str) -> bool:
    """The model has one of the abilities ``names`` (kgen.models.Ability member names)."""
    from kgen.models import Ability, can

    return any(can(model, Ability[name]) for name in names)


# Each capability: the abilities it needs (any one of them), its inputs and its function.
CAPABILITIES: tuple[tuple[str, Callable, Callable, Callable], ...] = (
    ("reconstruct", lambda m: _has(m, "RECONSTRUCT"), _images, _reconstruct),
    ("encode", lambda m: _has(m, "ENCODE"), _images, _encode),
    ("decode", lambda m: _has(m, "DECODE") and _has(m, "ENCODE"),
     lambda m: {"code": ((None, *_code_shape(m)), "float32")}, _decode),
    ("generate", lambda m: _has(m, "GENERATE"), lambda m: {"latent": ((None, *_latent_shape(m)), "float32")},
     _generate),
    ("sample", lambda m: _has(m, "SAMPLE"), lambda m: {"seed": ((None,), "int64")}, _sample_reference),
    ("classify", lambda m: _has(m, "CLASSIFY", "CLUSTER"), _images, _classify),
)
COMPUTE = {name: compute for name, _, _, compute in CAPABILITIES}
# The model method whose ``condition`` parameter decides whether a signature takes a label.
CONDITIONED_METHOD = {"reconstruct": "reconstruct", "decode": "decode", "generate": "generate", "sample": "generate"}
IMAGE_OUTPUT = {"reconstruct": "reconstruction", "decode": "images", "generate": "images", "sample": "images"}
# The errors with which a model says it cannot do something in its configuration (e.g. an AAE
# that only classifies in its semi-supervised mode); anything else is a bug and propagates.
NOT_CAPABLE = (NotImplementedError, ValueError)


def _conditional(model, name: str) -> bool:
    if name == "sample" and not _has(model, "GENERATE"):
        return False  # sampled without a latent (the RBM's Gibbs chains): unconditional
    if name == "reconstruct":  # only a decoder told the true label (the supervised AAE) needs one
        return _has(model, "LABELLED_RECONSTRUCTION")
    if _has(model, "CONDITIONAL") and not _has(model, "LABELLED_GENERATOR"):
        return False  # the label only picks a prior component (aae --conditional-prior): served from the marginal
    method = CONDITIONED_METHOD.get(name)
    return method is not None and takes_condition(model, method)


def example_inputs(model, signature: Signature, n: int, seed: int = 0) -> dict[str, np.ndarray]:
    """n rows of inputs for a signature: images in [0, 1] (N(0, 1) for unbounded data), codes
    N(0, 1), latents from the model's prior, seeds 1000 + i, labels 0, 1, ..., C-1, 0, ..."""
    from keras import ops

    rng = np.random.default_rng(seed)
    out = {}
    for name, (shape, dtype) in signature.inputs.items():
        if name == "images":
            draw = rng.random if _bounds(model) is not None else rng.standard_normal
            out[name] = draw((n, *shape[1:])).astype("float32")
        elif name == "latent":
            out[name] = ops.convert_to_numpy(model.sample_latent(n, seed=seed)).astype("float32")
        elif name == "seed":
            out[name] = np.arange(1000, 1000 + n, dtype="int64")
        elif name == "label":
            out[name] = (np.arange(n) % model.num_classes).astype("int64")
        else:
            out[name] = rng.standard_normal((n, *shape[1:])).astype("float32")
    return out


def signatures(model, only: list[str] | None = None) -> list[Signature]:
    """The signatures the model supports (those in ``only``, in that order, when given).

    Output names and shapes come from running each signature eagerly on a small batch.
    """
    from keras import ops

    found: dict[str, Signature] = {}
    skipped: dict[str, str] = {}
    for name, available, inputs_of, compute in CAPABILITIES:
        if not available(model):
            continue
        try:
            signature = Signature(name, dict(inputs_of(model)))
            conditional = _conditional(model, name)
            if conditional:
                signature.inputs["label"] = ((None,), "int64")
            probe = example_inputs(model, signature, 2 if name != "sample" else 1)
            outputs = compute(model, probe, _condition(model, probe))
        except NOT_CAPABLE as exc:
            skipped[name] = str(exc)
            continue
        if conditional:
            _check_one_hot(model)
        signature.outputs = {key: ((None, *np.shape(value)[1:]), "int64" if key == "label" else "float32")
                             for key, value in ((k, ops.convert_to_numpy(v)) for k, v in outputs.items())}
        signature.image = IMAGE_OUTPUT.get(name) if _bounds(model) is not None else None
        found[name] = signature
    why = "".join(f"; {name} is not available: {reason}" for name, reason in skipped.items())
    if not found:
        raise ExportError(f"model '{model.model_name}' has nothing to serve (no reconstruct, encode, decode, "
                          f"generate, sample or predict_proba){why}")
    if only:
        unknown = [name for name in only if name not in found]
        if unknown:
            raise ExportError(f"unknown signature '{unknown[0]}' for model '{model.model_name}'; "
                              f"it has: {', '.join(found)}{why}")
        return [found[name] for name in dict.fromkeys(only)]
    return list(found.values())


def _condition(model, inputs):
    """The model's own condition for the ``label`` input (eager), or None."""
    return None if "label" not in inputs else model.condition_of_labels(len(inputs["label"]), inputs["label"])


def _check_one_hot(model) -> None:
    """The graph turns labels into one-hot conditions: make sure that is what the model uses."""
    from keras import ops

    classes = model.num_classes
    condition = ops.convert_to_numpy(model.condition_of_labels(classes, np.arange(classes)))
    if not np.array_equal(condition, np.eye(classes, dtype=condition.dtype)):
        raise ExportError(f"model '{model.model_name}' conditions on something other than one-hot labels; "
                          "kgen export cannot build its label input")


def add_png(signature: Signature) -> None:
    """--png: a ``png_bytes`` output (TF Serving base64-encodes outputs named *_bytes over REST)."""
    if signature.image is not None:
        signature.outputs["png_bytes"] = ((None,), "string")


def check_png(model) -> None:
    shape = tuple(model.data_shape)
    if _bounds(model) is None or len(shape) != 3 or shape[-1] not in (1, 3):
        raise ExportError(f"--png needs images of shape (H, W, 1 or 3) in a bounded range; model "
                          f"'{model.model_name}' works on data of shape {shape} ({model.hparams['data_range']})")


def reference_outputs(model, signature: Signature, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The Keras model's outputs for a signature (eager, any backend)."""
    from keras import ops

    if signature.name == "sample":
        inputs = {k: v[:SAMPLE_REFERENCES] for k, v in inputs.items()}
    outputs = COMPUTE[signature.name](model, inputs, _condition(model, inputs))
    return {k: ops.convert_to_numpy(v) for k, v in outputs.items()}


# -- the TensorFlow side: graph functions, SavedModel, op check, warmup ------------------------
def _tf_condition(model, label):
    """One-hot conditions from int labels; a label outside 0..C-1 fails the request instead of
    silently conditioning on nothing."""
    import tensorflow as tf

    classes = model.num_classes
    checks = [tf.debugging.assert_non_negative(label, message=f"label must be in 0..{classes - 1}"),
              tf.debugging.assert_less(label, tf.constant(classes, label.dtype),
                                       message=f"label must be in 0..{classes - 1}")]
    with tf.control_dependencies(checks):
        return tf.one_hot(label, classes, dtype="float32")


def _seeded(model, seed):
    """Draws from the model's own seed generator start at [seed, 0], exactly as
    ``model.sample(..., seed=seed)`` starts them, without touching its state: inside a graph the
    generator becomes a function of the input (``keras.StatelessScope``), so the SavedModel
    holds stateless random ops only."""
    import keras
    import tensorflow as tf

    state = model.seed_generator.state
    value = tf.cast(tf.stack([seed, tf.zeros_like(seed)]), state.dtype)
    return keras.StatelessScope(state_mapping=[(state, value)])


def _tf_sample(model, seed, condition):
    """One draw per seed (``tf.map_fn``): row i depends on seed i only."""
    import tensorflow as tf

    def draw(fn):
        def one(s):
            with _seeded(model, s):
                return fn()[0]
        return one

    if _has(model, "GENERATE"):
        latent = tf.map_fn(draw(lambda: model.sample_latent(1)), seed, fn_output_signature=tf.float32)
        return {"images": to_unit(model, model.generate(latent, condition)), "latent": latent}
    return {"images": to_unit(model, tf.map_fn(draw(lambda: model.sample(1)), seed, fn_output_signature=tf.float32))}


def _png(images):
    import tensorflow as tf

    pixels = tf.cast(tf.round(tf.clip_by_value(images, 0.0, 1.0) * 255.0), tf.uint8)
    return tf.map_fn(tf.io.encode_png, pixels, fn_output_signature=tf.string)


def _endpoint(model, signature: Signature):
    """The graph function of a signature; its positional arguments are the signature's inputs."""
    import tensorflow as tf

    def endpoint(*args):
        inputs = dict(zip(signature.inputs, args))
        condition = _tf_condition(model, inputs["label"]) if "label" in inputs else None
        if signature.name == "sample":
            outputs = _tf_sample(model, inputs["seed"], condition)
        else:
            outputs = COMPUTE[signature.name](model, inputs, condition)
        outputs = {k: tf.cast(v, signature.outputs[k][1]) for k, v in outputs.items()}
        if "png_bytes" in signature.outputs:
            outputs["png_bytes"] = _png(outputs[signature.image])
        return outputs

    specs = [tf.TensorSpec(shape, dtype, name=name) for name, (shape, dtype) in signature.inputs.items()]
    return endpoint, specs


def write_savedmodel(model, plan: list[Signature], path: Path) -> None:
    """The SavedModel of ``plan`` at ``path`` (TensorFlow backend only); the first signature is
    also serving_default."""
    import keras

    if keras.backend.backend() != "tensorflow":
        raise RuntimeError("write_savedmodel runs on the TensorFlow backend; use export()")
    archive = keras.export.ExportArchive()
    archive.track(model)
    for signature in plan:
        fn, specs = _endpoint(model, signature)
        archive.add_endpoint(signature.name, fn, input_signature=specs)
    archive.write_out(str(path), verbose=False)


def graph_ops(path: str | Path) -> set[str]:
    """Op types in a SavedModel's graphs and function library (calls to its own functions excluded)."""
    from tensorflow.core.protobuf import saved_model_pb2

    saved = saved_model_pb2.SavedModel.FromString((Path(path) / "saved_model.pb").read_bytes())
    ops, functions = set(), set()
    for graph in saved.meta_graphs:
        ops |= {node.op for node in graph.graph_def.node}
        for function in graph.graph_def.library.function:
            functions.add(function.signature.name)
            ops |= {node.op for node in function.node_def}
    return ops - functions


def check_ops(path: str | Path) -> set[str]:
    """Raise ExportFailed if the graph needs Python, XLA modules or ops TensorFlow does not register."""
    from tensorflow.python.framework import op_def_registry

    ops = graph_ops(path)
    bad = sorted(op for op in ops if op in FORBIDDEN_OPS or op_def_registry.get(op) is None)
    if bad:
        raise ExportFailed(f"the exported graph holds ops TF Serving cannot run: {', '.join(bad)}")
    return ops


def write_warmup(path: Path, model_name: str, plan: list[Signature], inputs: dict[str, dict]) -> Path:
    """assets.extra/tf_serving_warmup_requests: one PredictionLog (a one-row PredictRequest) per
    signature, which TF Serving replays at load so the first client does not pay for it."""
    import tensorflow as tf

    try:
        from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2
    except ImportError:
        raise ExportError(NO_SERVING_API) from None
    target = path / WARMUP_FILE
    target.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(target)) as writer:
        for signature in plan:
            request = predict_pb2.PredictRequest(
                model_spec=model_pb2.ModelSpec(name=model_name, signature_name=signature.name))
            for key, value in inputs[signature.name].items():
                request.inputs[key].CopyFrom(tf.make_tensor_proto(value[:1]))
            log = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
            writer.write(log.SerializeToString())
    return target


def export_here(model, plan: list[Signature], path: Path, model_name: str, warmup: bool,
                inputs: dict[str, dict], sample_references: bool) -> dict:
    """What is done under the TensorFlow backend: the SavedModel, its op check, the warmup file,
    and (for --check) the references of ``sample``, which only TensorFlow's random ops reproduce.
    Returns {"ops": [...], "sample": {output: nested list}}. A full disk (or another refused
    write) is an ExportFailed naming the file, here and in the TensorFlow subprocess alike."""
    with _writing(path):
        write_savedmodel(model, plan, path)
        ops = check_ops(path)
        if warmup:
            write_warmup(path, model_name, plan, inputs)
    result: dict[str, Any] = {"ops": sorted(ops)}
    sample = next((s for s in plan if s.name == "sample"), None)
    if sample_references and sample is not None:
        result["sample"] = {k: v.tolist() for k, v in reference_outputs(model, sample, inputs["sample"]).items()}
    return result


# The TensorFlow subprocess's program. Not ``python -m kgen.export``: that runs this file as a second
# module, ``__main__``, beside the ``kgen.export`` its imports load (two ExportError classes).
TENSORFLOW_CHILD = "import sys\nfrom kgen.export import _main\nsys.exit(_main(sys.argv[1:]))\n"


def _tensorflow_process(specs: list[dict]) -> list[dict]:
    """``export_here`` for every spec in one fresh TensorFlow-backend process (TensorFlow's import
    is paid once), each model reloaded from its run's model.keras."""
    root = str(Path(kgen.__file__).resolve().parents[1])  # this kgen, whatever is installed
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "3",
           "PYTHONPATH": os.pathsep.join([root, *filter(None, [os.environ.get("PYTHONPATH")])])}
    proc = _run_child(TENSORFLOW_CHILD, [json.dumps(specs)], env)
    lines = [line for line in proc.stdout.splitlines() if line.startswith(("{", "["))]
    if lines:
        result = json.loads(lines[-1])
        if isinstance(result, dict) and "error" in result:
            raise {"ExportError": ExportError, "RunError": RunError}.get(result["kind"], ExportFailed)(result["error"])
        if proc.returncode == 0:
            return result
    last = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
    raise ExportFailed(f"the export under the TensorFlow backend failed: {last}")


def _main(argv: list[str]) -> int:
    """Entry of the TensorFlow subprocess: argv[0] is the JSON list of specs built by ``export_runs``."""
    results = []
    try:
        from kgen.runs import load_model

        for spec in json.loads(argv[0]):
            plan = [Signature(s["name"], _shapes(s["inputs"]), _shapes(s["outputs"]), s["image"])
                    for s in spec["signatures"]]
            with np.load(spec["inputs"]) as data:
                inputs = _unflatten(data)
            results.append(export_here(load_model(spec["run"]), plan, Path(spec["path"]), spec["name"],
                                       spec["warmup"], inputs, spec["check"]))
    except (ExportError, ExportFailed, RunError) as exc:
        print(json.dumps({"error": str(exc), "kind": type(exc).__name__}))
        return 2
    print(json.dumps(results))
    return 0


def _shapes(spec: dict) -> dict:
    return {k: (tuple(shape), dtype) for k, (shape, dtype) in spec.items()}


def _flatten(per_signature: dict[str, dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {f"{sig}/{key}": value for sig, values in per_signature.items() for key, value in values.items()}


def _unflatten(data) -> dict[str, dict[str, np.ndarray]]:
    out: dict[str, dict[str, np.ndarray]] = {}
    for key in data.files:
        sig, name = key.split("/", 1)
        out.setdefault(sig, {})[name] = data[key]
    return out


# -- the check: a fresh process that cannot import kgen (nor Keras) -----------------------------
CHECKER = r"""
import json, sys
sys.modules.update(kgen=None, cli=None, keras=None)  # importing them now fails: plain TensorFlow only
import numpy as np
import tensorflow as tf
from tensorflow.core.framework import types_pb2
from tensorflow.core.protobuf import saved_model_pb2

def info(tensors):
    return {key: {"dtype": types_pb2.DataType.Name(t.dtype), "name": t.name,
                  "shape": [d.size for d in t.tensor_shape.dim]} for key, t in sorted(tensors.items())}

results = []
for job in json.loads(sys.argv[1]):
    with open(job["path"] + "/saved_model.pb", "rb") as f:
        saved = saved_model_pb2.SavedModel.FromString(f.read())
    graph = next(g for g in saved.meta_graphs if "serve" in g.meta_info_def.tags)
    defs = {name: {"inputs": info(d.inputs), "outputs": info(d.outputs), "method": d.method_name}
            for name, d in sorted(graph.signature_def.items()) if not name.startswith("__")}
    loaded = tf.saved_model.load(job["path"], tags=["serve"])
    inputs = np.load(job["inputs"])
    outputs = {}
    for name in job["signatures"]:
        fn = loaded.signatures[name]
        keys = sorted({k.split("/", 1)[1] for k in inputs.files if k.startswith(name + "/")})
        for batch in job["batches"]:
            feed = {k: tf.constant(inputs[name + "/" + k][:batch]) for k in keys}
            for key, value in fn(**feed).items():
                outputs[f"{name}/{batch}/{key}"] = value.numpy()
    np.savez(job["outputs"], **outputs)
    results.append(defs)
print(json.dumps(results))
"""


def _run_checker(jobs: list[dict], empty: Path) -> list[dict]:
    """Load each export with ``python -I`` (no PYTHONPATH, user site or cwd on sys.path) in the
    ``empty`` folder, kgen, cli and keras blocked; run every signature at every CHECK_BATCHES size.
    ``jobs``: [{"path", "inputs" (npz), "outputs" (npz to write), "signatures"}]; returns their
    signature defs."""
    args = [{**job, "path": str(Path(job["path"]).resolve()), "batches": list(CHECK_BATCHES)} for job in jobs]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "KERAS"))}
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    proc = _run_child(CHECKER, [json.dumps(args)], env, isolated=True, cwd=empty)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("[")]
    if proc.returncode != 0 or not lines:
        last = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise ExportFailed(f"the export does not load and run in a plain TensorFlow process: {last}")
    return json.loads(lines[-1])


def _png_pixels(blobs) -> np.ndarray:
    from io import BytesIO

    from PIL import Image

    return np.stack([np.asarray(Image.open(BytesIO(bytes(b)))) for b in blobs])


def compare(plan: list[Signature], defs: dict, outputs: dict[str, np.ndarray],
            references: dict[str, dict[str, np.ndarray]]) -> dict[str, dict[str, float]]:
    """Max |SavedModel - Keras| per signature and output over CHECK_BATCHES (divided by the output's
    largest magnitude where that exceeds 1); raises ExportFailed beyond TOLERANCE, on a signature
    whose names, shapes or dtypes are not the planned ones, or when an input row (a ``sample``
    seed) gives another output at another batch size."""
    dtypes = {"float32": "DT_FLOAT", "int64": "DT_INT64", "string": "DT_STRING"}
    problems, diffs = [], {}
    for signature in plan:
        for alias in [signature.name] + (["serving_default"] if signature is plan[0] else []):
            found = defs.get(alias, {})
            for side in ("inputs", "outputs"):
                planned = {k: {"dtype": dtypes[d], "shape": [-1 if n is None else n for n in shape]}
                           for k, (shape, d) in getattr(signature, side).items()}
                actual = {k: {"dtype": v["dtype"], "shape": v["shape"]} for k, v in found.get(side, {}).items()}
                if planned != actual:
                    problems.append(f"signature '{alias}' {side} are {actual or 'missing'}, expected {planned}")
        reference, worst = references[signature.name], {}
        for batch in CHECK_BATCHES:
            for key in signature.outputs:
                got = outputs.get(f"{signature.name}/{batch}/{key}")
                if got is None or len(got) != batch:
                    problems.append(f"{signature.name}: no {key} of {batch} rows for a batch of {batch}")
                    continue
                if key == "png_bytes":  # decoded PNG pixels against the rounded reference images
                    want = np.round(np.clip(reference[signature.image][:batch], 0, 1) * 255)
                    pixels = _png_pixels(got[: len(want)]).reshape(want.shape).astype(np.float64)
                    worst[key] = max(worst.get(key, 0.0), float(np.abs(pixels - want).max()))
                    if worst[key] > 1:  # 1: a value at x.5 may round either way
                        problems.append(f"{signature.name}: png_bytes pixels differ by {worst[key]:.0f} levels")
                    continue
                if key == "label":  # an argmax: right when it points at a maximal reference probability
                    probabilities = reference["probabilities"][:batch]
                    diff = float((probabilities.max(-1) - probabilities[np.arange(batch), got]).max())
                else:  # sample: SAMPLE_REFERENCES rows of reference
                    want = reference[key][:batch]
                    first = outputs[f"{signature.name}/{CHECK_BATCHES[0]}/{key}"]
                    scale = max(1.0, float(np.abs(reference[key]).max()))
                    diff = max(float(np.abs(got[: len(want)] - want).max()),
                               float(np.abs(got[: len(first)] - first).max())) / scale
                worst[key] = max(worst.get(key, 0.0), diff)
                if worst[key] > TOLERANCE:
                    problems.append(f"{signature.name}: {key} differs from Keras by {worst[key]:.3g} "
                                    f"(tolerance {TOLERANCE:g})")
        diffs[signature.name] = worst
    if problems:
        raise ExportFailed("check failed: " + "; ".join(dict.fromkeys(problems)))
    return diffs


# -- stopping cleanly: signals, child processes, refused writes ---------------------------------
class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM (``signum``) during an export. A KeyboardInterrupt, so whatever cleans up
    after Ctrl-C cleans up after SIGTERM too; the CLI exits with 128 + signum."""

    def __init__(self, signum: int) -> None:
        super().__init__()  # the CLI names the signal (signum)
        self.signum = signum


class _Signals:
    """While active: SIGINT and SIGTERM raise ``Interrupted`` in the main thread. SIGTERM's default
    ends the process on the spot, running no ``finally``: the temporary folders, the scratch folder
    and the child processes would be left behind. Only the first signal raises, so a second one
    cannot cut short the cleanup the first set off; inside ``held()`` a signal waits for the end of
    the block, so no folder is created or renamed without the bookkeeping that decides its removal.
    Signals ignored on entry (SIGINT in a background job of a script) stay ignored; the previous
    handlers come back on exit. Outside the main thread Python allows no handlers: nothing changes
    there."""

    def __init__(self) -> None:
        self.received: int | None = None
        self.raised = False
        self.holding = 0
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> _Signals:
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                handler = signal.getsignal(signum)
                if handler not in (signal.SIG_IGN, None):  # None: a handler set outside Python, left alone
                    self.previous[signum] = handler
                    signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc_info) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)
        self._raise_pending()  # a signal that came is never swallowed

    def _handle(self, signum: int, frame) -> None:
        if self.received is None:
            self.received = signum
            self._raise_pending()

    def _raise_pending(self) -> None:
        if self.received is not None and not self.raised and not self.holding:
            self.raised = True
            raise Interrupted(self.received)

    @contextmanager
    def held(self) -> Iterator[None]:
        """A block no signal interrupts; one that comes meanwhile is raised at its end."""
        self.holding += 1
        try:
            yield
        finally:
            self.holding -= 1
        self._raise_pending()


# The first lines of every child's program: a thread that ends the child when its parent is gone.
# The parent kills and reaps its children whenever it unwinds (``_run_child``), but a parent that
# dies without unwinding (SIGKILL, a crash) cannot, and the child would go on writing into a folder
# nobody will publish or remove. What the child can see is that it was re-parented: polling
# getppid() works on every POSIX system (PR_SET_PDEATHSIG is Linux-only and follows the thread that
# forked, not the process) for a wake-up every 0.2 s. The parent's pid comes from the parent, in
# case it died before this thread started.
PARENT_WATCH = """\
import os as _os, threading as _threading, time as _time
def _exit_with_parent(parent=int(_os.environ.pop("KGEN_PARENT_PID"))):
    while _os.getppid() == parent:
        _time.sleep(0.2)
    _os._exit(1)
_threading.Thread(target=_exit_with_parent, daemon=True).start()
"""


def _run_child(program: str, args: list[str], env: dict[str, str], isolated: bool = False,
               cwd: Path | None = None) -> subprocess.CompletedProcess:
    """``python [-I] -c PROGRAM ARGS``, PARENT_WATCH first, its output captured. The child never
    outlives the wait: whatever interrupts it (``Interrupted``, an error) kills and reaps the child
    before it goes on, so the cleanup that follows never races a child still writing into the
    folders it removes. SIGKILL, because the child has nothing of its own to clean up."""
    command = [sys.executable, *(["-I"] if isolated else []), "-c", PARENT_WATCH + program, *args]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd,
                          env={**env, "KGEN_PARENT_PID": str(os.getpid())}) as proc:
        try:
            stdout, stderr = proc.communicate()
        except BaseException:
            proc.kill()
            proc.wait()
            raise
    return subprocess.CompletedProcess(command, proc.returncode, stdout, stderr)


# Errors that mean the file system refused a write. TensorFlow's C++ writers report them as an
# OpError whose message holds "PATH; <strerror>" (a full disk: ResourceExhaustedError from SaveV2).
WRITE_ERRNOS = tuple(getattr(errno, name) for name in ("ENOSPC", "EDQUOT", "EFBIG", "EROFS", "EACCES", "EIO")
                     if hasattr(errno, name))


def _write_error(exc: BaseException) -> tuple[str, str | None] | None:
    """(what went wrong, the file if known) when ``exc`` is a refused write, else None."""
    if isinstance(exc, OSError):
        return (exc.strerror or str(exc)).lower(), exc.filename
    tf = sys.modules.get("tensorflow")
    if tf is not None and isinstance(exc, tf.errors.OpError):
        for number in WRITE_ERRNOS:
            found = re.search(rf"(\S+); {re.escape(os.strerror(number))}", exc.message)
            if found:
                return os.strerror(number).lower(), found.group(1)
    return None


@contextmanager
def _writing(where: Path) -> Iterator[None]:
    """A refused write (a full disk above all) inside the block becomes one ExportFailed line that
    says what and where (the file, else ``where``), instead of a traceback."""
    try:
        yield
    except Exception as exc:
        refused = _write_error(exc)
        if refused is None:
            raise
        reason, filename = refused
        raise ExportFailed(f"{reason}: {filename or where}; nothing was exported") from None


# -- versions, folders, the whole export --------------------------------------------------------
def versions(model_dir: Path) -> list[int]:
    """The integer version folders TF Serving would see."""
    if not model_dir.is_dir():
        return []
    return sorted(int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit())


def default_name(config: dict) -> str:
    """<model>-<dataset>, e.g. vae-mnist: a retrained run exports as the next version of the same name."""
    return f"{config['model']}-{slug(str(config.get('dataset', 'data')))}"


def _version(model_dir: Path, version: int | str | None, taken: set[int]) -> int:
    """The requested version, or the next free one; ``taken``: versions given to earlier runs of this call."""
    existing = set(versions(model_dir)) | taken
    if version is None:
        return max(existing, default=0) + 1
    try:
        number = int(str(version))
    except ValueError:
        raise ExportError(f"--version must be a positive integer, got {version!r}") from None
    if number < 1:
        raise ExportError(f"--version must be a positive integer, got {version!r}")
    if number in existing or (model_dir / str(number)).exists():
        raise ExportError(f"{model_dir / str(number)} exists; versions are never overwritten "
                          f"(next free: {max(existing, default=0) + 1})")
    return number


def _make_dirs(path: Path) -> list[Path]:
    """mkdir -p that returns the folders it created, deepest first (removed if the export fails)."""
    missing = []
    probe = path
    while not probe.exists():
        missing.append(probe)
        probe = probe.parent
    if not probe.is_dir():
        raise ExportError(f"cannot write to {path}: {probe} is not a folder")
    for folder in reversed(missing):
        try:
            folder.mkdir()
        except OSError as exc:
            _remove_empty(missing)
            raise ExportError(f"cannot write to {path}: {exc.strerror or exc}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        _remove_empty(missing)
        raise ExportError(f"cannot write to {path}: permission denied")
    return missing


def _remove_empty(folders: list[Path]) -> None:
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            pass


def _make_tmp(model_dir: Path, version: int) -> Path:
    """The hidden folder a version is written in, ``.tmp-<version>-<random>``: a plain mkdir, so it
    has the modes the umask gives (mkdtemp's 0700 would keep TF Serving, often another user, out of
    the published version)."""
    while True:
        path = model_dir / f".tmp-{version}-{secrets.token_hex(4)}"
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue


def _share(folder: Path) -> None:
    """Everything in ``folder`` gets the folder's own modes (a plain mkdir's, under the umask), files
    without the execute bits: what a version holds is readable by whoever may read the version,
    whatever modes TensorFlow's writers chose."""
    mode = stat.S_IMODE(folder.stat().st_mode)
    for path in folder.rglob("*"):
        if not path.is_symlink():
            path.chmod(mode if path.is_dir() else mode & 0o666)


@dataclass
class ExportResult:
    """What was written for one run; ``check`` holds the fresh process's signature defs and the
    max differences from Keras per signature and output (with --check)."""

    path: Path
    name: str
    version: int
    model: str
    run: Path
    trained_on: str | None
    signatures: list[Signature]
    ops: list[str] = field(default_factory=list)
    warmup: Path | None = None
    check: dict | None = None


@dataclass
class _Job:
    """One run on its way: its model under the current backend, the plan and the temporary folder."""

    run: Run
    config: dict
    name: str
    version: int
    model: Any
    plan: list[Signature]
    inputs: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    tmp: Path | None = None
    done: dict = field(default_factory=dict)
    report: dict | None = None


def export(run: str | Path, out: str | Path = DEFAULT_OUT, name: str | None = None, version: int | str | None = None,
           only: list[str] | None = None, warmup: bool = False, check: bool = False,
           png: bool = False) -> ExportResult:
    """Export a run's model to ``out/<name>/<version>/`` (see the module docstring)."""
    return export_runs([run], out, name, version, only, warmup, check, png)[0]


def export_runs(runs: list[str | Path], out: str | Path = DEFAULT_OUT, name: str | None = None,
                version: int | str | None = None, only: list[str] | None = None, warmup: bool = False,
                check: bool = False, png: bool = False) -> list[ExportResult]:
    """Export several runs at once (each as ``<model>-<dataset>`` unless ``name`` is given for one
    run): one TensorFlow process and one check process for all of them. All or nothing: if any
    run fails, no version folder of this call is left."""
    from kgen.runs import load_model

    runs = list(runs)
    if not runs:
        raise ExportError("name a run to export (or --list the exports)")
    if warmup and importlib.util.find_spec("tensorflow_serving") is None:
        raise ExportError(NO_SERVING_API)
    if len(runs) > 1 and (name is not None or version is not None):
        raise ExportError("--name and --version are for a single run")
    jobs, taken = [], {}
    for path in runs:  # everything that can be refused is refused before anything is written
        opened = Run.open(path)
        config = opened.config()
        model_name = name or default_name(config)
        if not NAME_PATTERN.fullmatch(model_name):
            raise ExportError(f"--name must be letters, digits, '.', '_' or '-' (TF Serving puts it in URLs), "
                              f"got {model_name!r}")
        number = _version(Path(out) / model_name, version, taken.setdefault(model_name, set()))
        taken[model_name].add(number)
        model = load_model(opened)
        plan = signatures(model, only)
        if png:
            check_png(model)
            for signature in plan:
                add_png(signature)
        jobs.append(_Job(opened, config, model_name, number, model, plan))

    with _Signals() as signals:
        return _write_and_publish(jobs, Path(out), warmup, check, signals)


def _write_and_publish(jobs: list[_Job], out: Path, warmup: bool, check: bool,
                       signals: _Signals) -> list[ExportResult]:
    """Write every job's version into its temporary folder, check them, publish them. Whatever stops
    it (a failure, ``Interrupted``) removes the temporary folders and the model folders this call
    created; the scratch folder (inputs and outputs of the subprocesses) goes in every case."""
    import keras

    created: list[Path] = []
    scratch: Path | None = None
    try:
        with signals.held(), _writing(Path(tempfile.gettempdir())):
            scratch = Path(tempfile.mkdtemp(prefix="kgen-export-"))
        for i, job in enumerate(jobs):
            model_dir = out / job.name
            with signals.held(), _writing(model_dir):  # a folder exists only once it is recorded for removal
                created[:0] = _make_dirs(model_dir)  # newest first: a later folder may be inside an earlier one
                job.tmp = _make_tmp(model_dir, job.version)
            job.inputs = {s.name: example_inputs(job.model, s, max(CHECK_BATCHES)) for s in job.plan}
            with _writing(scratch):
                np.savez(scratch / f"inputs-{i}.npz", **_flatten(job.inputs))
        if keras.backend.backend() == "tensorflow":
            for job in jobs:
                job.done = export_here(job.model, job.plan, job.tmp, job.name, warmup, job.inputs, check)
        else:
            done = _tensorflow_process([
                {"run": str(job.run.path), "path": str(job.tmp), "name": job.name, "warmup": warmup, "check": check,
                 "inputs": str(scratch / f"inputs-{i}.npz"), "signatures": [asdict(s) for s in job.plan]}
                for i, job in enumerate(jobs)])
            for job, result in zip(jobs, done):
                job.done = result
        if check:
            _check_jobs(jobs, scratch)
        for job in jobs:
            with _writing(job.tmp):
                _write_extras(job)
                _share(job.tmp)
        return _publish(jobs, out, warmup, signals)
    except BaseException:
        with signals.held():
            for job in jobs:
                if job.tmp is not None:
                    shutil.rmtree(job.tmp, ignore_errors=True)
            _remove_empty(created)
        raise
    finally:
        if scratch is not None:
            with signals.held():
                shutil.rmtree(scratch, ignore_errors=True)


def _publish(jobs: list[_Job], out: Path, warmup: bool, signals: _Signals) -> list[ExportResult]:
    """Rename each complete, checked temporary folder to its version."""
    finals = [out / job.name / str(job.version) for job in jobs]
    for final in finals:
        if final.exists():  # another export took this version meanwhile
            raise ExportError(f"{final} appeared while exporting; versions are never overwritten")
    results = []
    for job, final in zip(jobs, finals):
        with signals.held():  # ``job.tmp`` says whether the version was published, whenever a signal comes
            try:
                os.rename(job.tmp, final)  # atomic: a polling server sees no version, then a complete one
            except OSError as exc:  # a non-empty folder of that name appeared since the check above
                raise ExportError(f"cannot publish {final}: {exc.strerror or exc}") from None
            job.tmp = None  # published, complete and checked: never removed from here on
        results.append(ExportResult(final, job.name, job.version, job.config["model"], job.run.path,
                                    job.config.get("backend"), job.plan, job.done["ops"],
                                    final / WARMUP_FILE if warmup else None, job.report))
    return results


def _check_jobs(jobs: list[_Job], scratch: Path) -> None:
    """--check: the fresh process's outputs against the Keras models' (``compare``)."""
    empty = scratch / "check"  # the checker's working folder
    empty.mkdir()
    checked = _run_checker([{"path": str(job.tmp), "inputs": str(scratch / f"inputs-{i}.npz"),
                             "outputs": str(scratch / f"outputs-{i}.npz"), "signatures": [s.name for s in job.plan]}
                            for i, job in enumerate(jobs)], empty)
    for i, (job, defs) in enumerate(zip(jobs, checked)):
        references = {s.name: reference_outputs(job.model, s, job.inputs[s.name]) for s in job.plan
                      if s.name != "sample"}
        if "sample" in job.done:
            references["sample"] = {k: np.asarray(v, dtype=np.float32) for k, v in job.done["sample"].items()}
        with np.load(scratch / f"outputs-{i}.npz", allow_pickle=True) as data:  # png_bytes: our own object arrays
            outputs = {k: data[k] for k in data.files}
        try:
            job.report = {"signature_defs": defs, "diffs": compare(job.plan, defs, outputs, references)}
        except ExportFailed as exc:
            raise ExportFailed(f"{job.run.path}: {exc}") from None


def _rest_body(signature: Signature, inputs: dict[str, np.ndarray], rows: int) -> dict:
    """A row-format predict request: {"signature_name": ..., "instances": [{input: value}, ...]}."""
    def value(x):
        return np.round(x.astype(np.float64), 4).tolist() if x.dtype.kind == "f" else x.tolist()

    return {"signature_name": signature.name,
            "instances": [{k: value(v[i]) for k, v in inputs.items()} for i in range(rows)]}


def _write_extras(job: _Job) -> None:
    """assets.extra/kgen.json and one REST body per signature (TF Serving ignores both)."""
    requests = job.tmp / REQUESTS_DIR
    requests.mkdir(parents=True, exist_ok=True)
    for signature in job.plan:
        rows = 1 if "images" in signature.inputs else 2
        body = _rest_body(signature, job.inputs[signature.name], rows)
        (requests / f"{signature.name}.json").write_text(json.dumps(body))
    meta = {"name": job.name, "version": job.version, "run": str(job.run.path.resolve()),
            "model": job.config["model"], "dataset": job.config.get("dataset"),
            "trained_on": job.config.get("backend"), "kgen_version": kgen.__version__,
            "exported_at": time.strftime("%Y-%m-%dT%H:%M:%S"), "serving_default": job.plan[0].name,
            "signatures": {s.name: {"inputs": s.inputs, "outputs": s.outputs} for s in job.plan}}
    (job.tmp / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")


# -- what the CLI prints ------------------------------------------------------------------------
def list_exports(out: str | Path = DEFAULT_OUT) -> list[dict]:
    """Every model under ``out`` with its versions: [{"name", "path", "versions": [{"version", meta...}]}]."""
    root = Path(out)
    if not root.is_dir():
        return []
    found = []
    for model_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        entries = []
        for number in versions(model_dir):
            folder = model_dir / str(number)
            try:
                meta = json.loads((folder / META_FILE).read_text())
            except (OSError, ValueError):
                meta = {}
            entries.append({"version": number, "complete": (folder / "saved_model.pb").is_file(), **meta})
        if entries:
            found.append({"name": model_dir.name, "path": str(model_dir), "versions": entries})
    return found


def format_listing(found: list[dict], out: str | Path) -> str:
    if not found:
        return f"no exports in {out}"
    lines = []
    for entry in found:
        served = max((v["version"] for v in entry["versions"] if v["complete"]), default=None)
        lines.append(f"{entry['name']}  ({entry['path']}; TF Serving serves version {served})")
        for v in entry["versions"]:
            signatures = ", ".join(v.get("signatures", {})) or "?"
            origin = f"{v.get('model', '?')} from {v.get('run', '?')}" if v.get("model") else "not written by kgen"
            missing = "" if v["complete"] else "  [no saved_model.pb]"
            lines.append(f"  {v['version']:>3}  {origin}  signatures: {signatures}{missing}")
    return "\n".join(lines)


def signature_table(defs: dict) -> str:
    """The signature defs as ``saved_model_cli show --dir DIR --all`` prints them."""
    lines = ["MetaGraphDef with tag-set: 'serve' contains the following SignatureDefs:", ""]
    for name, d in defs.items():
        lines.append(f"signature_def['{name}']:")
        for side, word in (("inputs", "input(s)"), ("outputs", "output(s)")):
            lines.append(f"  The given SavedModel SignatureDef contains the following {word}:")
            for key, t in d[side].items():
                shape = "(" + ", ".join(str(n) for n in t["shape"]) + ")" if len(t["shape"]) != 1 else f"({t['shape'][0]})"
                lines += [f"    {side}['{key}'] tensor_info:", f"        dtype: {t['dtype']}",
                          f"        shape: {shape}", f"        name: {t['name']}"]
        lines.append(f"  Method name is: {d['method']}")
    return "\n".join(lines)


def serving_instructions(result: ExportResult) -> str:
    """The docker line that serves the export, and a REST body and curl line per signature."""
    base = result.path.parent.resolve()
    url = f"http://localhost:8501/v1/models/{result.name}:predict"
    lines = ["Serve it (TF Serving's Docker image; REST on port 8501, gRPC on 8500 with -p 8500:8500):",
             f"  docker run -p 8501:8501 --mount type=bind,source={base},target=/models/{result.name} "
             f"-e MODEL_NAME={result.name} -t tensorflow/serving", ""]
    for signature in result.signatures:
        body_file = result.path / REQUESTS_DIR / f"{signature.name}.json"
        body = body_file.read_text()
        default = " (serving_default)" if signature is result.signatures[0] else ""
        inputs = ", ".join(f"{k} {_shape_text(s)} {d}" for k, (s, d) in signature.inputs.items())
        outputs = ", ".join(f"{k} {_shape_text(s)} {d}" for k, (s, d) in signature.outputs.items())
        lines.append(f"{signature.name}{default}: {inputs} -> {outputs}")
        if len(body) <= 300:
            lines.append(f"  body: {body}")
            lines.append(f"  curl -s -X POST {url} -d '{body}'")
        else:
            lines.append(f"  body: {body[:120]} ... ({len(body):,} characters in {body_file})")
            lines.append(f"  curl -s -X POST {url} -d @{body_file}")
    return "\n".join(lines)


def _shape_text(shape) -> str:
    return "[" + ",".join("N" if n is None else str(n) for n in shape) + "]"


def describe(result: ExportResult) -> str:
    """The CLI's report: where it went, the check, the table and how to serve it."""
    origin = f"{result.run}, trained on {result.trained_on or '?'}"
    if result.trained_on != "tensorflow":
        origin += ", exported from a TensorFlow-backend process"
    lines = [f"exported {result.model} ({origin}) as {result.name} version {result.version}: {result.path}",
             f"signatures: {', '.join(s.name for s in result.signatures)} (serving_default: {result.signatures[0].name})",
             f"ops: {len(result.ops)} native TensorFlow op types (no PyFunc, XlaCallModule or custom ops)"]
    if result.warmup:
        lines.append(f"warmup: {result.warmup} ({len(result.signatures)} PredictionLog records)")
    if result.check:
        worst = max((d for per in result.check["diffs"].values() for k, d in per.items() if k != "png_bytes"),
                    default=0.0)
        lines += [f"check: loaded in a fresh Python without kgen or Keras; every signature at batch "
                  f"{', '.join(map(str, CHECK_BATCHES))} matches Keras (max abs diff {worst:.2g} <= {TOLERANCE:g}, "
                  "relative for outputs beyond [-1, 1])",
                  "", signature_table(result.check["signature_defs"]), "", serving_instructions(result)]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
