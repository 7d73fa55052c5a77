"""`kgen export`: SavedModels for TF Serving from runs trained on this backend, one per family,
checked in a fresh process (the CLI's --check) and again here; versions, atomic writes, warmup
records, the op check and bad input; the modes of a published version, a full disk, and signals
(nothing left behind, no child process left running)."""

from __future__ import annotations

import errno
import io
import json
import os
import signal
import stat
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Callable

import numpy as np
import pytest
import tensorflow as tf
from keras import ops
from PIL import Image

from conftest import BACKEND, invoke, run_kgen, start_kgen
from kgen import export as kgen_export
from kgen.export import processes, publish, savedmodel
from kgen.backend.precision import MIXED
from kgen.export.common import writing
from kgen.models import Ability, can
from kgen.runs import Run, load_model
from kgen.signals import Interrupted, Signals


# family -> (model, options of a tiny network, its signatures with serving_default first).
# A new family is one line here.
FAMILIES = {
    "ae": ("ae", ["--hidden", "16", "--latent-dim", "4"], ["reconstruct", "encode", "decode"]),
    "vae": ("vae", ["--hidden", "16"], ["reconstruct", "encode", "decode", "generate", "sample"]),
    "rbm": ("rbm", ["--hidden", "16", "--sample-steps", "5"], ["reconstruct", "encode", "decode", "sample"]),
    "gan": ("gan", ["--width", "8", "--latent-dim", "4"], ["generate", "sample"]),
    "cgan": ("cgan", ["--arch", "dense", "--width", "8", "--latent-dim", "4"], ["generate", "sample"]),
    "classifier": ("classifier", ["--arch", "dense", "--width", "8"], ["classify"]),
    "aae_supervised": ("aae", ["--mode", "supervised", "--hidden", "16", "--disc-width", "8"],
                       ["reconstruct", "encode", "decode", "generate", "sample"]),
    "aae_semi": ("aae", ["--mode", "semi-supervised", "--labels", "10", "--hidden", "16", "--disc-width", "8"],
                 ["reconstruct", "encode", "decode", "generate", "sample", "classify"]),
    # Mixed-precision runs export float32 signatures computed in float32 (their float32 variables).
    "vae_bf16": ("vae", ["--hidden", "16", "--precision", "mixed_bfloat16"],
                 ["reconstruct", "encode", "decode", "generate", "sample"]),
    "gan_fp16": ("gan", ["--width", "8", "--latent-dim", "4", "--precision", "mixed_float16"], ["generate", "sample"]),
}
BATCHES = (1, 7, 64)


def one_line_error(result, code: int = 2) -> str:
    assert result.exit_code == code, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("kgen: error: "), result.output
    return lines[0]


def train_tiny(family: str, run_dir: Path, dataset: Path) -> Path:
    """A run of the family's tiny network, one step of training on this backend."""
    model, options, _ = FAMILIES[family]
    result = invoke("train", model, "--dataset", dataset, "--epochs", 1, "--steps-per-epoch", 1,
                    "--validation-steps", 1, "--batch-size", 16, "--run-dir", run_dir, *options)
    assert result.exit_code == 0, result.output
    return run_dir


@pytest.fixture(scope="module")
def runs(idx_folder, tmp_path_factory) -> dict[str, Path]:
    """One tiny run per family, trained on this backend."""
    root = tmp_path_factory.mktemp("runs")
    return {family: train_tiny(family, root / family, idx_folder) for family in FAMILIES}


@pytest.fixture(scope="module")
def ae_run(idx_folder, tmp_path_factory) -> Path:
    """One tiny ae run, for the tests that only need something to export (``runs`` trains eight)."""
    return train_tiny("ae", tmp_path_factory.mktemp("ae") / "run", idx_folder)


@dataclass
class Exported:
    out: Path  # the export root
    text: str  # what `kgen export` printed
    names: dict[str, str]  # family -> model name in TF Serving (<model>-<dataset>)
    versions: dict[str, int]  # family -> its version (families of one model share the name)

    def path(self, family: str, version: int | None = None) -> Path:
        return self.out / self.names[family] / str(version or self.versions[family])


@pytest.fixture(scope="module")
def exported(runs, tmp_path_factory) -> Exported:
    """Every family (and the ae run a second time: version 2) in one `kgen export --check --warmup --png`."""
    out = tmp_path_factory.mktemp("exports") / "saved_models"
    result = invoke("export", *runs.values(), runs["ae"], "--out", out, "--check", "--warmup", "--png")
    assert result.exit_code == 0, result.output
    names = {family: kgen_export.default_name(Run.open(run).config()) for family, run in runs.items()}
    versions = {family: list(names.values())[: i + 1].count(name) for i, (family, name) in enumerate(names.items())}
    return Exported(out, result.output, names, versions)


def signature_defs(path: Path) -> dict:
    from tensorflow.core.protobuf import saved_model_pb2

    saved = saved_model_pb2.SavedModel.FromString((path / "saved_model.pb").read_bytes())
    (graph,) = saved.meta_graphs
    assert list(graph.meta_info_def.tags) == ["serve"]
    return {k: v for k, v in graph.signature_def.items() if not k.startswith("__")}


def shape_of(info) -> tuple:
    return tuple(d.size for d in info.tensor_shape.dim)


# -- what every family exports -------------------------------------------------------------
@pytest.mark.parametrize("family", FAMILIES)
def test_signatures_names_shapes_and_dtypes(exported, runs, family):
    path = exported.path(family)
    defs = signature_defs(path)
    expected = FAMILIES[family][2]
    assert set(defs) == {*expected, "serving_default"}
    assert defs["serving_default"].inputs.keys() == defs[expected[0]].inputs.keys()
    model = load_model(runs[family])
    image = (-1, *model.data_shape)
    for name, d in defs.items():
        assert d.method_name == "tensorflow/serving/predict"
        for key, info in [*d.inputs.items(), *d.outputs.items()]:
            assert shape_of(info)[0] == -1, (name, key)  # dynamic batch
            dtype = {"label": tf.int64, "seed": tf.int64, "png_bytes": tf.string}.get(key, tf.float32)
            assert info.dtype == dtype.as_datatype_enum, (name, key)
            if key in ("images", "reconstruction"):
                assert shape_of(info) == image, (name, key)
    conditional = {"label"} if can(model, Ability.CONDITIONAL) else set()
    if "encode" in defs:
        assert set(defs["encode"].outputs) == set(model.encode_output_names or ["code"])
        code = shape_of(next(iter(defs["encode"].outputs.values())))
        assert shape_of(defs["decode"].inputs["code"]) == code
    if "generate" in defs:
        assert set(defs["generate"].inputs) == {"latent", *conditional}
    if "sample" in defs:  # a latent comes back when the model draws one (not the RBM's Gibbs chains)
        assert set(defs["sample"].inputs) == {"seed", *conditional}
        assert ("latent" in defs["sample"].outputs) == can(model, Ability.GENERATE)
    if family == "classifier":
        assert shape_of(defs["classify"].outputs["probabilities"]) == (-1, 10)
        assert "png_bytes" not in defs["classify"].outputs
    meta = json.loads((path / kgen_export.META_FILE).read_text())
    assert meta["trained_on"] == BACKEND and meta["serving_default"] == expected[0]
    assert list(meta["signatures"]) == expected


def keras_outputs(model, name: str, inputs: dict) -> dict:
    """What the Keras model (this backend) says each signature should return, written out here
    independently of kgen.export: [0, 1] images in and out."""
    bounded = model.hparams["data_range"] == "symmetric"
    to_model = (lambda x: 2.0 * x - 1.0) if bounded else (lambda x: x)
    to_unit = (lambda y: (y + 1.0) / 2.0) if bounded else (lambda y: y)
    condition = model.condition_of_labels(len(inputs["label"]), inputs["label"]) if "label" in inputs else None
    given = {} if condition is None else {"condition": condition}
    if name == "reconstruct":
        return {"reconstruction": to_unit(model.reconstruct(to_model(inputs["images"]), **given))}
    if name == "encode":
        codes = model.encode(to_model(inputs["images"]))
        return dict(zip(model.encode_output_names, codes)) if isinstance(codes, tuple) else {"code": codes}
    if name == "decode":
        return {"images": to_unit(model.decode(inputs["code"], **given))}
    if name == "generate":
        return {"images": to_unit(model.generate(inputs["latent"], condition))}
    probabilities = model.predict_proba(to_model(inputs["images"]))
    return {"probabilities": probabilities, "label": np.argmax(ops.convert_to_numpy(probabilities), -1)}


def feed(model, signature, n: int, rng) -> dict:
    inputs = {}
    for key, info in signature.inputs.items():
        shape = (n, *shape_of(info)[1:])
        if key == "images":
            inputs[key] = rng.random(shape).astype("float32")
        elif key == "label":
            inputs[key] = rng.integers(0, model.num_classes, n).astype("int64")
        elif key == "latent":
            inputs[key] = ops.convert_to_numpy(model.sample_latent(n, seed=int(rng.integers(1 << 20))))
        else:
            inputs[key] = rng.standard_normal(shape).astype("float32")
    return inputs


@pytest.mark.parametrize("family", FAMILIES)
def test_outputs_match_the_keras_model_at_every_batch_size(exported, runs, family):
    path = exported.path(family)
    loaded = tf.saved_model.load(str(path))
    model = load_model(runs[family], precision="float32")  # a mixed run's variables, computed as exported
    assert Run.open(runs[family]).config()["precision"] in ("float32", *MIXED)
    rng = np.random.default_rng(7)
    for name in FAMILIES[family][2]:
        if name == "sample":
            continue  # its own test
        fn = loaded.signatures[name]
        for n in BATCHES:
            inputs = feed(model, signature_defs(path)[name], n, rng)
            got = fn(**{k: tf.constant(v) for k, v in inputs.items()})
            want = keras_outputs(model, name, inputs)
            assert set(want) <= set(got)
            for key, value in want.items():
                g, w = got[key].numpy(), ops.convert_to_numpy(value)
                assert g.shape == w.shape, (name, key, n)
                np.testing.assert_allclose(g, w, atol=1e-5, rtol=0, err_msg=f"{family} {name} {key} batch {n}")
            if "png_bytes" in got:
                image = got["images" if "images" in got else "reconstruction"].numpy()
                pixels = np.stack([np.asarray(Image.open(io.BytesIO(b))) for b in got["png_bytes"].numpy()])
                assert np.abs(pixels.reshape(image.shape) - np.round(image * 255)).max() <= 1


@pytest.mark.parametrize("family", [f for f in FAMILIES if "sample" in FAMILIES[f][2]])
def test_sample_is_deterministic_per_seed(exported, runs, family):
    loaded = tf.saved_model.load(str(exported.path(family)))
    model = load_model(runs[family], precision="float32")
    sample = loaded.signatures["sample"]
    labels = {"label": tf.constant([3, 1, 4, 1, 5, 9, 2], tf.int64)} if can(model, Ability.CONDITIONAL) else {}
    seeds = tf.constant([11, 12, 13, 14, 15, 16, 17], tf.int64)
    first, again = sample(seed=seeds, **labels), sample(seed=seeds, **labels)
    np.testing.assert_array_equal(first["images"].numpy(), again["images"].numpy())
    # Row i depends on seed i only, not on the rest of the batch.
    alone = sample(seed=seeds[2:3], **{k: v[2:3] for k, v in labels.items()})
    np.testing.assert_allclose(alone["images"].numpy()[0], first["images"].numpy()[2], atol=1e-6)
    images = first["images"].numpy()
    assert images.shape == (7, *model.data_shape) and images.min() >= 0.0 and images.max() <= 1.0
    assert np.abs(images[0] - images[1]).max() > 1e-3  # other seeds, other images
    if "latent" in first:  # images are generate(latent), by the Keras model of this backend
        latent = first["latent"].numpy()
        condition = model.condition_of_labels(7, labels["label"].numpy()) if labels else None
        want = ops.convert_to_numpy(model.generate(latent, condition))
        np.testing.assert_allclose(images, (want + 1.0) / 2.0 if model.hparams["data_range"] == "symmetric" else want,
                                   atol=1e-5)
    if BACKEND == "tensorflow":  # TensorFlow's random ops: seed s is kgen's model.sample(1, seed=s)
        kwargs = {"labels": [3]} if labels else {}
        want = ops.convert_to_numpy(model.sample(1, seed=11, **kwargs))[0]
        want = (want + 1.0) / 2.0 if model.hparams["data_range"] == "symmetric" else want
        np.testing.assert_allclose(images[0], want, atol=1e-5)


def test_a_label_outside_the_classes_fails_the_request(exported):
    sample = tf.saved_model.load(str(exported.path("cgan"))).signatures["sample"]
    with pytest.raises(tf.errors.InvalidArgumentError, match="label must be in 0..9"):
        sample(seed=tf.constant([1], tf.int64), label=tf.constant([10], tf.int64))


def test_warmup_holds_one_prediction_log_per_signature(exported):
    from tensorflow_serving.apis import prediction_log_pb2

    for family, (_, _, expected) in FAMILIES.items():
        path = exported.path(family)
        defs = signature_defs(path)
        records = list(tf.data.TFRecordDataset(str(path / kgen_export.WARMUP_FILE)).as_numpy_iterator())
        logs = [prediction_log_pb2.PredictionLog.FromString(r) for r in records]
        assert [log.predict_log.request.model_spec.signature_name for log in logs] == expected
        for log in logs:
            request = log.predict_log.request
            assert request.model_spec.name == path.parent.name
            assert set(request.inputs) == set(defs[request.model_spec.signature_name].inputs)
            assert all(tf.make_ndarray(t).shape[0] == 1 for t in request.inputs.values())


@pytest.mark.parametrize("family", FAMILIES)
def test_graphs_hold_native_tensorflow_ops_only(exported, family):
    from tensorflow.python.framework import op_def_registry

    found = kgen_export.graph_ops(exported.path(family))
    assert found and not found & kgen_export.FORBIDDEN_OPS
    assert all(op_def_registry.get(op) is not None for op in found)
    if "sample" in FAMILIES[family][2]:
        assert found & {"StatelessRandomUniformV2", "StatelessRandomNormalV2"}
        assert not found & {"RandomStandardNormal", "RandomUniform"}  # stateful draws would break seeds


@pytest.mark.one_backend
def test_the_op_check_refuses_python_and_xla_ops(exported, monkeypatch):
    monkeypatch.setattr(savedmodel, "graph_ops", lambda path: {"MatMul", "XlaCallModule", "EagerPyFunc"})
    with pytest.raises(kgen_export.ExportFailed, match="EagerPyFunc, XlaCallModule"):
        kgen_export.check_ops(exported.path("ae"))


def test_the_check_report_and_serving_instructions(exported):
    out, text = exported.out, exported.text
    assert text.count("check: loaded in a fresh Python without kgen or Keras") == len(FAMILIES) + 1
    assert "max abs diff" in text and "signature_def['serving_default']:" in text
    for family, (_, _, expected) in FAMILIES.items():
        name = exported.names[family]
        source = (out / name).resolve()
        assert (f"docker run -p 8501:8501 --mount type=bind,source={source},target=/models/{name} "
                f"-e MODEL_NAME={name} -t tensorflow/serving") in text
        for signature in expected:
            body = json.loads((exported.path(family) / kgen_export.REQUESTS_DIR / f"{signature}.json").read_text())
            assert body["signature_name"] == signature and body["instances"]
            assert f"curl -s -X POST http://localhost:8501/v1/models/{name}:predict -d " in text
    sample_body = {"signature_name": "sample", "instances": [{"seed": 1000, "label": 0}, {"seed": 1001, "label": 1}]}
    assert f"-d '{json.dumps(sample_body)}'" in text  # short bodies are printed whole


def test_check_tables_match_saved_model_cli_layout(exported):
    table = exported.text.split("MetaGraphDef with tag-set: 'serve' contains the following SignatureDefs:")[1]
    assert "  The given SavedModel SignatureDef contains the following input(s):\n    inputs['images'] tensor_info:\n" \
           "        dtype: DT_FLOAT\n        shape: (-1, 28, 28, 1)\n" in table
    assert "  Method name is: tensorflow/serving/predict" in table


@pytest.mark.one_backend
def test_compare_fails_beyond_the_tolerance_and_across_batch_sizes():
    signature = kgen_export.Signature("decode", {"code": ((None, 2), "float32")}, {"images": ((None, 3), "float32")})
    defs = {name: {"inputs": {"code": {"dtype": "DT_FLOAT", "shape": [-1, 2]}},
                   "outputs": {"images": {"dtype": "DT_FLOAT", "shape": [-1, 3]}}} for name in ("decode", "serving_default")}
    reference = np.random.default_rng(0).random((64, 3)).astype("float32")
    outputs = {f"decode/{n}/images": reference[:n].copy() for n in kgen_export.CHECK_BATCHES}
    refs = {"decode": {"images": reference}}
    assert kgen_export.compare([signature], defs, outputs, refs)["decode"]["images"] == 0.0
    outputs["decode/7/images"][3, 1] += 2e-5
    with pytest.raises(kgen_export.ExportFailed, match="images differs from Keras by 2e-05"):
        kgen_export.compare([signature], defs, outputs, refs)
    outputs["decode/7/images"][3, 1] -= 2e-5
    defs["serving_default"]["outputs"]["images"]["shape"] = [-1, 4]
    with pytest.raises(kgen_export.ExportFailed, match="signature 'serving_default' outputs"):
        kgen_export.compare([signature], defs, outputs, refs)


def test_signature_choice_and_order(runs):
    model = load_model(runs["vae"])
    chosen = kgen_export.signatures(model, ["sample", "encode"])
    assert [s.name for s in chosen] == ["sample", "encode"]  # the first is serving_default
    assert list(chosen[1].outputs) == ["mean", "log_var"]
    with pytest.raises(kgen_export.ExportError, match="unknown signature 'classify' .* it has: reconstruct, encode"):
        kgen_export.signatures(model, ["classify"])


# -- versions, atomic writes, listing --------------------------------------------------------------
@pytest.mark.one_backend
def test_versions_count_up_and_are_listed(exported):
    out, name = exported.out, exported.names["ae"]
    assert kgen_export.versions(out / name) == [1, 2]
    result = run_kgen("export", "--list", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert f"{name}  ({out / name}; TF Serving serves version 2)" in result.stdout
    assert "  1  ae from " in result.stdout and "  2  ae from " in result.stdout
    assert "signatures: reconstruct, encode, decode" in result.stdout


@pytest.mark.one_backend
def test_a_failure_mid_export_leaves_no_version(runs, exported, tmp_path, monkeypatch):
    """The TensorFlow stage dies after writing part of the SavedModel: no version folder, no temporary
    folder, and the model folder this export created is gone too."""
    model_dir = tmp_path / "out" / exported.names["ae"]
    seen = []

    def half_written(*args, **kwargs):
        (tmp,) = [p for p in model_dir.iterdir() if not p.name.isdigit()]
        seen.append(tmp.name)
        (tmp / "saved_model.pb").write_bytes(b"partial")
        raise kgen_export.ExportFailed("simulated crash while writing")

    monkeypatch.setattr(publish, "export_here", half_written)
    monkeypatch.setattr(publish, "tensorflow_process", half_written)
    result = invoke("export", runs["ae"], "--out", tmp_path / "out")
    assert "simulated crash" in one_line_error(result, code=1)
    assert seen[0].startswith(".tmp-1-")  # hidden: TF Serving ignores non-numeric folders
    assert not model_dir.exists()
    (model_dir / "3").mkdir(parents=True)  # an existing model folder is kept
    result = invoke("export", runs["ae"], "--out", tmp_path / "out")
    one_line_error(result, code=1)
    assert seen[1].startswith(".tmp-4-")
    assert [p.name for p in model_dir.iterdir()] == ["3"]


@pytest.mark.one_backend
def test_a_failure_removes_every_folder_the_call_made(runs, tmp_path, monkeypatch):
    """Two runs of two names into a new folder: a failure removes both model folders, then the
    folders above them that this call made (one model folder must not keep the other's parents)."""
    def crash(*args, **kwargs):
        raise kgen_export.ExportFailed("simulated crash while writing")

    monkeypatch.setattr(publish, "export_here", crash)
    monkeypatch.setattr(publish, "tensorflow_process", crash)
    one_line_error(invoke("export", runs["ae"], runs["vae"], "--out", tmp_path / "new" / "out"), code=1)
    assert not (tmp_path / "new").exists()


# -- bad input ---------------------------------------------------------------------------------------
@pytest.mark.one_backend
def test_bad_input_is_one_line_and_writes_nothing(runs, exported, tmp_path):
    out = exported.out
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "config.json").write_text("{not json")
    no_model = tmp_path / "no-model"
    no_model.mkdir()
    (no_model / "config.json").write_text(json.dumps({"model": "ae"}))
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text(json.dumps({"model": "ae", "dataset": "x"}))
    (broken / "model.keras").write_bytes(b"not a zip")
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    cases = [
        ((tmp_path / "missing",), "no run at"),
        ((corrupt,), "config.json is corrupt"),
        ((no_model,), "has no model.keras yet"),
        ((broken,), "model.keras is corrupt"),
        ((runs["ae"], "--signature", "sample"), "unknown signature 'sample' for model 'ae'; it has: reconstruct"),
        ((runs["ae"], "--version", "2"), f"{exported.names['ae']}/2 exists; versions are never overwritten (next free: 3)"),
        ((runs["ae"], "--version", "0"), "--version must be a positive integer"),
        ((runs["ae"], "--name", "no/slash"), "--name must be letters, digits"),
        ((runs["ae"], runs["vae"], "--name", "both"), "--name and --version are for a single run"),
        ((), "name a run to export"),
    ]
    for args, message in cases:
        assert message in one_line_error(invoke("export", *args, "--out", out)), args
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before
    one_line_error(invoke("export", runs["ae"], "--signature", "nope", "--out", tmp_path / "fresh"))
    assert not (tmp_path / "fresh").exists()
    unwritable = one_line_error(invoke("export", runs["ae"], "--out", blocker / "saved_models"))
    assert "cannot write to" in unwritable and "is not a folder" in unwritable
    assert blocker.read_text() == ""


@pytest.mark.one_backend
def test_bad_input_through_the_console_script(runs, tmp_path):
    result = run_kgen("export", str(runs["ae"]), "--version", "x", "--out", str(tmp_path))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().startswith("kgen: error: Invalid value for '--version'")
    result = run_kgen("export", "--list", "--out", str(tmp_path / "nothing"))
    assert result.returncode == 0 and "no exports in" in result.stdout
    assert not list(tmp_path.iterdir())


# -- modes, a full disk, signals --------------------------------------------------------------------
@pytest.mark.one_backend
def test_a_version_has_the_modes_the_umask_gives(ae_run, tmp_path):
    """TF Serving often runs as another user: a published version (the folder and everything in it)
    has the modes a plain mkdir and a plain file get under the umask, not mkdtemp's private 0700."""
    previous = os.umask(0o027)  # not the usual 022: the modes must follow the umask, not be fixed
    try:
        result = invoke("export", ae_run, "--out", tmp_path / "out")
    finally:
        os.umask(previous)
    assert result.exit_code == 0, result.output
    (version,) = (tmp_path / "out").glob("*/1")
    assert (version / "saved_model.pb").is_file() and (version / "variables").is_dir()
    modes = {path: stat.S_IMODE(path.stat().st_mode) for path in [version, *version.rglob("*")]}
    wrong = {str(path.relative_to(version)): oct(mode) for path, mode in modes.items()
             if mode != (0o750 if path.is_dir() else 0o640)}
    assert wrong == {}


# A sitecustomize.py that replaces kgen.export.savedmodel.write_savedmodel in every Python started with it on
# PYTHONPATH: the kgen console script and its TensorFlow subprocess (not --check's process, which
# runs with -I). The replacement writes part of the SavedModel, then does what a test needs. Importing kgen's
# export imports TensorFlow before kgen's CLI starts, so the hook first installs the CLI's filter of absl's
# startup lines (cli.quiet), which the CLI would otherwise install before that import.
WRITER_HOOK = """
from cli.quiet import filter_native_startup_lines
filter_native_startup_lines()
import kgen.export.savedmodel

def write_savedmodel(model, plan, path):
    (path / "saved_model.pb").write_bytes(b"partial")
{body}

kgen.export.savedmodel.write_savedmodel = write_savedmodel
"""
DISK_FULL = """\
    import tensorflow as tf  # what TensorFlow's SaveV2 raises on a full disk
    raise tf.errors.ResourceExhaustedError(None, None, f"{path}/variables/variables_temp/part-00000-of-00001"
                                           ".data-00000-of-00001.tempstate1; No space left on device [Op:SaveV2]")"""
STUCK = """\
    import time
    while True:
        time.sleep(60)"""


def stuck(tmp: Path) -> bool:
    """Whether STUCK holds the writer of ``tmp`` (kgen, or its TensorFlow subprocess) for good."""
    try:
        return (tmp / "saved_model.pb").read_bytes() == b"partial"
    except OSError:
        return False


def kgen_env(tmp_path: Path, hook: str | None = None) -> dict[str, str]:
    """The environment of a kgen process: TMPDIR a folder of its own (where its scratch folder
    goes), and WRITER_HOOK with ``hook`` in place of writing a SavedModel."""
    tmpdir = tmp_path / "tmpdir"
    tmpdir.mkdir()
    env = {"TMPDIR": str(tmpdir)}
    if hook is not None:
        hooks = tmp_path / "hooks"
        hooks.mkdir()
        (hooks / "sitecustomize.py").write_text(WRITER_HOOK.format(body=hook))
        env["PYTHONPATH"] = os.pathsep.join([str(hooks), *filter(None, [os.environ.get("PYTHONPATH")])])
    return env


@pytest.mark.one_backend
def test_a_full_disk_is_one_line_and_leaves_nothing(ae_run, tmp_path):
    """TensorFlow runs out of space writing the variables (in kgen on TensorFlow, in its TensorFlow
    subprocess on JAX and PyTorch): one line naming the file, exit 1 (a failure while running, not
    bad input), no temporary or model folder, no scratch folder."""
    env = kgen_env(tmp_path, DISK_FULL)
    out = tmp_path / "out"
    result = run_kgen("export", str(ae_run), "--out", str(out), env=env)
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    model_dir = out / kgen_export.default_name(Run.open(ae_run).config())
    assert len(lines) == 1 and lines[0].startswith(f"kgen: error: no space left on device: {model_dir}/.tmp-1-"), lines
    assert lines[0].endswith(".tempstate1; nothing was exported")
    assert not out.exists() and not list(Path(env["TMPDIR"]).iterdir())


@pytest.mark.parametrize("error, reason, where", [
    (OSError(errno.ENOSPC, "No space left on device"), "no space left on device", None),  # write() of an open file
    (OSError(errno.EDQUOT, "Disk quota exceeded", "/srv/m/1/x.json"), "disk quota exceeded", "/srv/m/1/x.json"),
    (tf.errors.ResourceExhaustedError(None, None, "{{function_node __wrapped__SaveV2}} /srv/m/1/v.tempstate7; "
                                      "No space left on device [Op:SaveV2]"), "no space left on device",
     "/srv/m/1/v.tempstate7"),
])
@pytest.mark.one_backend
def test_refused_writes_say_what_and_where(tmp_path, error, reason, where):
    """An OSError (with or without its file) or TensorFlow's OpError for an errno: one line."""
    with pytest.raises(kgen_export.ExportFailed) as failed:
        with writing(tmp_path):
            raise error
    assert str(failed.value) == f"{reason}: {where or tmp_path}; nothing was exported"
    with pytest.raises(tf.errors.InvalidArgumentError):  # not a refused write: a bug, it propagates
        with writing(tmp_path):
            raise tf.errors.InvalidArgumentError(None, None, "Incompatible shapes: [2] vs. [3]")


def holding(marker: str) -> dict[int, str]:
    """Live processes (zombies left out) whose command line holds ``marker``: pid -> command line."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:  # it ended meanwhile
            continue
        if marker.encode() in command and state != "Z":
            found[int(entry.name)] = command.decode(errors="replace").replace("\0", " ")
    return found


def wait_for(what: str, found: Callable, proc: subprocess.Popen | None = None, deadline: float = 600):
    """Poll ``found()`` until it returns something true, and return that. ``proc`` must not end
    first; the deadline is generous: it only keeps a broken test from hanging."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        value = found()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"kgen ended (exit {proc.returncode}) before {what}")
        time.sleep(0.05)
    pytest.fail(f"waited {deadline:.0f} s for {what}")


@pytest.fixture
def leftovers():
    """Register kgen processes (``.procs``) and markers of their children (``.markers``): at teardown,
    whatever a failed test left running is killed, by pid (the markers are unique temporary folders)."""
    registry = SimpleNamespace(procs=[], markers=[])
    yield registry
    for proc in registry.procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    for marker in registry.markers:
        for pid in holding(marker):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def sigint_as_at_a_terminal() -> None:
    """In the child before it runs kgen: SIGINT's default disposition, as in a terminal. A suite started in
    the background of a script (`make test &`) ignores SIGINT, and kgen rightly keeps an ignored SIGINT
    ignored: the Ctrl-C these tests send would then never arrive."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_export(ae_run: Path, out: Path, env: dict, leftovers, *options: str) -> tuple[subprocess.Popen, Path]:
    """`kgen [OPTIONS] export RUN --out OUT --check` in a session of its own (so that a signal to its
    process group reaches kgen and its children only), once it has made its temporary folder."""
    proc = start_kgen(*options, "export", ae_run, "--out", out, "--check", env=env, start_new_session=True,
                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, preexec_fn=sigint_as_at_a_terminal)
    leftovers.procs.append(proc)
    tmp = wait_for("a temporary version folder", lambda: next(out.glob("*/.tmp-*"), None), proc)
    leftovers.markers.append(tmp.name)  # in the arguments of both children
    return proc, tmp


@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="finds processes in /proc")
@pytest.mark.parametrize("signum, stage", [(signal.SIGTERM, "write"), (signal.SIGINT, "write"),
                                           (signal.SIGTERM, "check")])
@pytest.mark.one_backend
def test_a_signal_leaves_nothing_behind(ae_run, tmp_path, leftovers, signum, stage):
    """SIGTERM (to kgen) or Ctrl-C (SIGINT to its process group) while the SavedModel is written
    (by kgen on TensorFlow, by its TensorFlow subprocess on JAX and PyTorch; kept writing by STUCK)
    or while --check's process runs: one line, exit 128 + signum, no temporary or model folder, no
    scratch folder, and no child process still running."""
    env = kgen_env(tmp_path, STUCK if stage == "write" else None)
    out = tmp_path / "out"
    proc, tmp = start_export(ae_run, out, env, leftovers)
    if stage == "write":
        wait_for("STUCK writing the SavedModel", lambda: stuck(tmp), proc)
    else:
        checker = wait_for("the --check process", lambda: [pid for pid, command in holding(tmp.name).items()
                                                             if " -I " in command], proc)
        os.kill(checker[0], signal.SIGSTOP)  # it can neither finish before the signal nor end by itself after it
    children = holding(tmp.name)
    assert children or (stage == "write" and BACKEND == "tensorflow")  # TensorFlow writes in kgen itself
    if signum == signal.SIGINT:
        os.killpg(proc.pid, signum)
    else:
        os.kill(proc.pid, signum)
    _, stderr = proc.communicate(timeout=600)
    by = "" if signum == signal.SIGINT else f" by {signal.Signals(signum).name}"
    assert stderr.strip().splitlines() == [f"kgen: error: interrupted{by}; no unfinished export was left behind"]
    assert proc.returncode == 128 + signum
    assert not holding(tmp.name), children  # killed and reaped, not orphaned
    assert not out.exists()  # the temporary folder, and the folders this call made for it
    assert not list(Path(env["TMPDIR"]).iterdir())  # the scratch folder, --check's folder


@pytest.mark.one_backend
def test_a_signal_whose_exception_was_lost_ends_the_wait_for_a_child(tmp_path):
    """A signal whose exception Python dropped (its handler ran inside a gc callback) still ends the
    wait for a child within ``CHILD_POLL_SECONDS``, and the child is killed, not left running."""
    pid_file = tmp_path / "pid"
    program = f"import os, time\nopen({str(pid_file)!r}, 'w').write(str(os.getpid()))\ntime.sleep(60)\n"
    with Signals() as signals:
        def signal_lost():  # what the handler leaves when its exception is dropped
            while not pid_file.exists() or not pid_file.read_text():
                time.sleep(0.02)
            signals.received = signal.SIGTERM
        threading.Thread(target=signal_lost, daemon=True).start()
        started = time.monotonic()
        with pytest.raises(Interrupted):
            processes.run_child(program, [], dict(os.environ))
    assert time.monotonic() - started < 30
    with pytest.raises(ProcessLookupError):
        os.kill(int(pid_file.read_text()), 0)  # killed and reaped


@pytest.mark.one_backend
@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="finds processes in /proc")
def test_the_tensorflow_process_ends_when_kgen_is_killed(ae_run, tmp_path, leftovers):
    """SIGKILL gives kgen no chance to clean up (its temporary folder stays); its TensorFlow
    subprocess, kept writing by STUCK, sees it was orphaned and ends instead of writing on."""
    backend = "jax" if BACKEND == "tensorflow" else BACKEND  # one that exports from a subprocess
    # The backend by environment, not --backend: the hook imports kgen.export (and Keras) at start-up.
    env = {**kgen_env(tmp_path, STUCK), "KERAS_BACKEND": backend}
    proc, tmp = start_export(ae_run, tmp_path / "out", env, leftovers)
    wait_for("STUCK writing the SavedModel", lambda: stuck(tmp), proc)
    assert holding(tmp.name)
    proc.kill()
    proc.wait()
    wait_for("the end of the orphaned TensorFlow process", lambda: not holding(tmp.name), deadline=120)
