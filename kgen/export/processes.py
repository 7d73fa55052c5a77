"""The processes of an export: the TensorFlow-backend child that writes SavedModels for runs trained
on JAX or torch, and children that never outlive their parent (``run_child``, ``PARENT_WATCH``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

import kgen
from kgen import signals
from kgen.export.common import SERVING_PRECISION, ExportError, ExportFailed
from kgen.export.savedmodel import export_here
from kgen.export.signatures import Signature, shapes_of, unflatten_inputs
from kgen.runs import RunError, load_model

# The TensorFlow subprocess's program. Not ``python -m kgen.export``: that runs this file as a second
# module, ``__main__``, beside the ``kgen.export`` its imports load (two ExportError classes).
TENSORFLOW_CHILD = "import sys\nfrom kgen.export.processes import child_main\nsys.exit(child_main(sys.argv[1:]))\n"


def tensorflow_process(specs: list[dict]) -> list[dict]:
    """``export_here`` for every spec in one fresh TensorFlow-backend process (TensorFlow's import
    is paid once), each model reloaded from its run's model.keras."""
    root = str(Path(kgen.__file__).resolve().parents[1])  # this kgen, whatever is installed
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "3",
           "PYTHONPATH": os.pathsep.join([root, *filter(None, [os.environ.get("PYTHONPATH")])])}
    proc = run_child(TENSORFLOW_CHILD, [json.dumps(specs)], env)
    lines = [line for line in proc.stdout.splitlines() if line.startswith(("{", "["))]
    if lines:
        result = json.loads(lines[-1])
        if isinstance(result, dict) and "error" in result:
            raise {"ExportError": ExportError, "RunError": RunError}.get(result["kind"], ExportFailed)(result["error"])
        if proc.returncode == 0:
            return result
    last = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
    raise ExportFailed(f"the export under the TensorFlow backend failed: {last}")


def child_main(argv: list[str]) -> int:
    """Entry of the TensorFlow subprocess: argv[0] is the JSON list of specs built by ``export_runs``."""
    results = []
    try:
        for spec in json.loads(argv[0]):
            plan = [Signature(s["name"], shapes_of(s["inputs"]), shapes_of(s["outputs"]), s["image"])
                    for s in spec["signatures"]]
            with np.load(spec["inputs"]) as data:
                inputs = unflatten_inputs(data)
            results.append(export_here(load_model(spec["run"], precision=SERVING_PRECISION), plan, Path(spec["path"]), spec["name"],
                                       spec["warmup"], inputs, spec["check"]))
    except (ExportError, ExportFailed, RunError) as exc:
        print(json.dumps({"error": str(exc), "kind": type(exc).__name__}))
        return 2
    print(json.dumps(results))
    return 0


# The first lines of every child's program: a thread that ends the child when its parent is gone.
# The parent kills and reaps its children whenever it unwinds (``run_child``), but a parent that
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


CHILD_POLL_SECONDS = 0.5  # how often a wait for a child checks for a signal kgen.signals kept


def run_child(program: str, args: list[str], env: dict[str, str], isolated: bool = False,
               cwd: Path | None = None) -> subprocess.CompletedProcess:
    """``python [-I] -c PROGRAM ARGS``, PARENT_WATCH first, its output captured. The child never
    outlives the wait: whatever interrupts it (``kgen.signals.Interrupted``, an error) kills and reaps the child
    before it goes on, so the cleanup that follows never races a child still writing into the
    folders it removes. SIGKILL, because the child has nothing of its own to clean up."""
    command = [sys.executable, *(["-I"] if isolated else []), "-c", PARENT_WATCH + program, *args]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd,
                          env={**env, "KGEN_PARENT_PID": str(os.getpid())}) as proc:
        try:
            while True:
                try:
                    stdout, stderr = proc.communicate(timeout=CHILD_POLL_SECONDS)
                    break
                except subprocess.TimeoutExpired:  # retrying loses no output
                    signals.check()  # a Ctrl-C or SIGTERM whose exception Python dropped
        except BaseException:
            proc.kill()
            proc.wait()
            raise
    return subprocess.CompletedProcess(command, proc.returncode, stdout, stderr)
