"""Which signatures a model gets (by its abilities, ``CAPABILITIES``), their inputs and outputs, and
the Keras reference outputs the check compares a SavedModel with. Backend-neutral: runs on the
model's own backend before anything is written."""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from kgen.export.common import SAMPLE_REFERENCES, ExportError
from kgen.models import Ability, can
from kgen.models.base import DATA_BOUNDS


@dataclass
class Signature:
    """One SavedModel signature: input and output names -> (shape with None batch, dtype)."""

    name: str
    inputs: dict[str, tuple[tuple[int | None, ...], str]]
    outputs: dict[str, tuple[tuple[int | None, ...], str]] = field(default_factory=dict)
    image: str | None = None  # the output holding images in [0, 1] (gets png_bytes with --png)


def _bounds(model) -> tuple[float, float] | None:
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


def shapes_of(spec: dict) -> dict:
    return {k: (tuple(shape), dtype) for k, (shape, dtype) in spec.items()}


def flatten_inputs(per_signature: dict[str, dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {f"{sig}/{key}": value for sig, values in per_signature.items() for key, value in values.items()}


def unflatten_inputs(data) -> dict[str, dict[str, np.ndarray]]:
    out: dict[str, dict[str, np.ndarray]] = {}
    for key in data.files:
        sig, name = key.split("/", 1)
        out.setdefault(sig, {})[name] = data[key]
    return out
