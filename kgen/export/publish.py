"""The whole export: runs checked and planned, versions chosen, written to hidden temporary folders
beside the versions, checked, then renamed into place (all or nothing); the listing of exports."""

from __future__ import annotations

import importlib.util
import json
import os
import secrets
import shutil
import stat
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import kgen
from kgen.export.check import compare, run_checker
from kgen.export.common import (SERVING_PRECISION, CHECK_BATCHES, DEFAULT_OUT, META_FILE, NAME_PATTERN, NO_SERVING_API, REQUESTS_DIR,
                                WARMUP_FILE, ExportError, ExportFailed, writing)
from kgen.export.processes import tensorflow_process
from kgen.export.savedmodel import export_here
from kgen.export.signatures import Signature, flatten_inputs, add_png, check_png, example_inputs, reference_outputs, signatures
from kgen.runs import Run, load_model, slug
from kgen.signals import Signals


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
        model = load_model(opened, precision=SERVING_PRECISION)
        plan = signatures(model, only)
        if png:
            check_png(model)
            for signature in plan:
                add_png(signature)
        jobs.append(_Job(opened, config, model_name, number, model, plan))

    with Signals() as signals:
        return _write_and_publish(jobs, Path(out), warmup, check, signals)


def _write_and_publish(jobs: list[_Job], out: Path, warmup: bool, check: bool,
                       signals: Signals) -> list[ExportResult]:
    """Write every job's version into its temporary folder, check them, publish them. Whatever stops
    it (a failure, ``Interrupted``) removes the temporary folders and the model folders this call
    created; the scratch folder (inputs and outputs of the subprocesses) goes in every case."""
    import keras

    created: list[Path] = []
    scratch: Path | None = None
    try:
        with signals.held(), writing(Path(tempfile.gettempdir())):
            scratch = Path(tempfile.mkdtemp(prefix="kgen-export-"))
        for i, job in enumerate(jobs):
            model_dir = out / job.name
            with signals.held(), writing(model_dir):  # a folder exists only once it is recorded for removal
                created[:0] = _make_dirs(model_dir)  # newest first: a later folder may be inside an earlier one
                job.tmp = _make_tmp(model_dir, job.version)
            job.inputs = {s.name: example_inputs(job.model, s, max(CHECK_BATCHES)) for s in job.plan}
            with writing(scratch):
                np.savez(scratch / f"inputs-{i}.npz", **flatten_inputs(job.inputs))
        if keras.backend.backend() == "tensorflow":
            for job in jobs:
                job.done = export_here(job.model, job.plan, job.tmp, job.name, warmup, job.inputs, check)
        else:
            done = tensorflow_process([
                {"run": str(job.run.path), "path": str(job.tmp), "name": job.name, "warmup": warmup, "check": check,
                 "inputs": str(scratch / f"inputs-{i}.npz"), "signatures": [asdict(s) for s in job.plan]}
                for i, job in enumerate(jobs)])
            for job, result in zip(jobs, done):
                job.done = result
        if check:
            _check_jobs(jobs, scratch)
        for job in jobs:
            with writing(job.tmp):
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


def _publish(jobs: list[_Job], out: Path, warmup: bool, signals: Signals) -> list[ExportResult]:
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
    checked = run_checker([{"path": str(job.tmp), "inputs": str(scratch / f"inputs-{i}.npz"),
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
