"""The TensorFlow side of an export (TensorFlow backend only): graph functions per signature, the
SavedModel (``keras.export.ExportArchive``), the op check and TF Serving's warmup records."""

from __future__ import annotations

from pathlib import Path
from typing import Any


from kgen.export.common import FORBIDDEN_OPS, NO_SERVING_API, WARMUP_FILE, ExportError, ExportFailed, writing
from kgen.export.signatures import COMPUTE, Signature, _has, reference_outputs, to_unit


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
    with writing(path):
        write_savedmodel(model, plan, path)
        ops = check_ops(path)
        if warmup:
            write_warmup(path, model_name, plan, inputs)
    result: dict[str, Any] = {"ops": sorted(ops)}
    sample = next((s for s in plan if s.name == "sample"), None)
    if sample_references and sample is not None:
        result["sample"] = {k: v.tolist() for k, v in reference_outputs(model, sample, inputs["sample"]).items()}
    return result
