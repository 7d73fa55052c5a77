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
removed (``kgen.signals.Signals``, ``run_child``, ``writing``); a child whose parent died without cleaning
up (SIGKILL) ends itself (``PARENT_WATCH``).

The package: ``signatures`` (what a model gets, by its abilities), ``savedmodel`` (the TensorFlow
side), ``processes`` (the TensorFlow child, children that end with their parent), ``check`` and ``checker`` (the
fresh-process check), ``publish`` (versions, folders, the whole export). What the CLI prints is in
``cli/export_report.py``.
"""

from kgen.export.check import compare
from kgen.export.common import (CHECK_BATCHES, DEFAULT_OUT, FORBIDDEN_OPS, META_FILE, REQUESTS_DIR, TOLERANCE,
                                WARMUP_FILE, ExportError, ExportFailed)
from kgen.export.publish import ExportResult, default_name, export, export_runs, list_exports, versions
from kgen.export.savedmodel import check_ops, graph_ops, write_savedmodel
from kgen.export.signatures import CAPABILITIES, Signature, signatures
from kgen.signals import Interrupted

__all__ = ["CAPABILITIES", "CHECK_BATCHES", "DEFAULT_OUT", "FORBIDDEN_OPS", "META_FILE", "REQUESTS_DIR", "TOLERANCE",
           "WARMUP_FILE", "ExportError", "ExportFailed", "ExportResult", "Interrupted", "Signature", "check_ops",
           "compare", "default_name", "export", "export_runs", "graph_ops", "list_exports", "signatures", "versions",
           "write_savedmodel"]
