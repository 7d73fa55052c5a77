"""The --check program: load exports in a fresh Python that cannot import kgen, cli or Keras (plain
TensorFlow, as TF Serving would), run every signature at every batch size, write the outputs.

Run as a program (``kgen.export.check`` passes this file's text to ``python -I -c``), never
imported: argv[1] is the JSON list of jobs [{"path", "inputs", "outputs", "signatures", "batches"}];
it prints the signature definitions of each export as JSON.
"""

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
