"""`kgen train` data-parallel from the command line, on every backend: refused settings in one line,
a 2-replica run that matches the single-device run through fit(), checkpoints and validation, and a
killed 2-replica run resumed on one device (tests/test_distributed.py checks the engine itself)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import BACKEND, ROOT, invoke
from test_faults import checkpoint_arrays

KGEN = Path(sys.executable).with_name("kgen")
TIMEOUT = 600
# float32 training: two replicas sum a batch's gradients in two pieces; after a few dozen Adam steps
# the weights agree to this relative error (the exact-equivalence tests compute in float64).
TOLERANCE = 2e-3


def command(replicas: int, args: list[str]) -> tuple[list[str], dict]:
    """`kgen train ARGS` on ``replicas`` replicas of this backend: JAX and TensorFlow split the CPU into
    devices (before they start), torch runs one gloo process per replica (torchrun)."""
    env = {**os.environ, "KERAS_BACKEND": BACKEND, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    for name in ("TF_CONFIG", "JAX_NUM_CPU_DEVICES", "RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    if replicas == 1:
        return [str(KGEN), "train", *args], env
    if BACKEND == "jax":
        return [str(KGEN), "train", *args, "--devices", str(replicas)], {**env, "JAX_NUM_CPU_DEVICES": str(replicas)}
    if BACKEND == "tensorflow":
        program = ("import sys; from kgen.backend.distribution import virtual_cpu_devices; "
                   f"virtual_cpu_devices({replicas}); from cli.main import main; main(sys.argv[1:])")
        return [sys.executable, "-c", program, "train", *args, "--devices", str(replicas)], env
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(replicas),
            str(KGEN), "train", *args], env


def kgen_train(replicas: int, args: list[str]) -> subprocess.CompletedProcess:
    cmd, env = command(replicas, args)
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=TIMEOUT)


def kill_tree(pid: int) -> None:
    """SIGKILL a process and all its descendants, found (pgrep -P) before any of them dies."""
    found, queue = [], [pid]
    while queue:
        parent = queue.pop()
        found.append(parent)
        children = subprocess.run(["pgrep", "-P", str(parent)], capture_output=True, text=True).stdout.split()
        queue.extend(int(child) for child in children)
    for member in found:
        try:
            os.kill(member, signal.SIGKILL)
        except ProcessLookupError:
            pass


def relative_difference(a: dict, b: dict) -> dict[str, float]:
    return {k: float(np.linalg.norm(a[k].astype(float) - b[k].astype(float)) /
                     max(np.linalg.norm(b[k].astype(float)), 1e-12))
            for k in a if a[k].dtype.kind == "f"}


def base_args(idx_folder: Path, run_dir: Path, epochs: int) -> list[str]:
    # 160 training and 40 test images, global batch 20: whole batches only, so 1 and 2 replicas see the
    # same 8 steps per epoch and validate on the same 40 images (a distributed pass drops a partial batch).
    return ["ae", "--dataset", str(idx_folder), "--epochs", str(epochs), "--batch-size", "20", "--hidden", "16",
            "--latent-dim", "4", "--run-dir", str(run_dir)]


# -- refused settings -------------------------------------------------------------------------------
def test_more_devices_than_exist_a_silent_coordinator_and_no_launcher_are_one_line(idx_folder, tmp_path):
    silent = ["--coordinator", "127.0.0.1:9", "--num-processes", "2", "--process-id", "1", "--distribution-timeout", "2"]
    # TensorFlow's MultiWorkerMirroredStrategy takes every worker's address, in process order
    tf_silent = ["--coordinator", "127.0.0.1:9,127.0.0.1:10", *silent[2:]]
    torch_launched = {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "9"}
    cases = {  # (options, launcher environment, message) per backend
        "jax": [(["--devices", "64"], {}, "asks for more devices"), (silent, {}, "did not answer within 2 s")],
        "tensorflow": [(["--devices", "64"], {}, "asks for more devices"),
                       (silent, {}, "TensorFlow needs every worker's host:port"),
                       (tf_silent, {}, "did not answer within 2 s")],
        "torch": [(["--devices", "64"], {}, "torch runs one device per process"),
                  (["--num-processes", "2"], {}, "needs the launcher's environment"),
                  (["--distribution-timeout", "2"], torch_launched, "did not answer within 2 s")],
    }[BACKEND]
    for extra, launcher, message in cases:
        cmd, env = command(1, [*base_args(idx_folder, tmp_path / "run", 1), *extra])
        result = subprocess.run(cmd, capture_output=True, text=True, env={**env, **launcher}, timeout=TIMEOUT)
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
        assert lines[-1].startswith("kgen: error: ") and message in lines[-1], lines[-1]
        assert not (tmp_path / "run").exists()


@pytest.mark.one_backend
def test_usage_errors_of_the_distribution_options_need_no_backend(tmp_path):
    result = invoke("train", "ae", "--distribute", "none", "--devices", "2", "--run-dir", tmp_path / "r")
    assert result.exit_code == 2 and "--distribute none trains on one device" in result.output
    result = invoke("train", "ae", "--devices", "0", "--run-dir", tmp_path / "r")
    assert result.exit_code == 2 and "--devices must be a count >= 1" in result.output
    result = invoke("train", "ae", "--process-id", "3", "--num-processes", "2", "--run-dir", tmp_path / "r")
    assert result.exit_code == 2 and "--process-id must be in 0..1" in result.output


def test_a_global_batch_the_replicas_cannot_share_is_refused(idx_folder, tmp_path):
    args = base_args(idx_folder, tmp_path / "run", 1)
    args[args.index("--batch-size") + 1] = "15"  # 7.5 examples per replica
    result = kgen_train(2, args)
    line = "kgen: error: --batch-size 15 cannot be split evenly over 2 replicas"
    if BACKEND == "torch":  # torchrun reports its failed children itself (with its own traceback)
        assert result.returncode != 0 and result.stderr.count(line) == 2, result.stderr[-2000:]
    else:
        assert result.returncode == 2 and result.stderr.strip().splitlines()[-1].startswith(line), result.stderr[-2000:]
    assert not (tmp_path / "run").exists()


# -- two replicas through fit(), checkpoints and a resume on one device ----------------------------
@pytest.fixture(scope="module")
def one_device_run(idx_folder, tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("dist") / "one"
    result = kgen_train(1, base_args(idx_folder, run_dir, 3))
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir


@pytest.fixture(scope="module")
def two_replica_run(idx_folder, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    run_dir = tmp_path_factory.mktemp("dist") / "two"
    return run_dir, kgen_train(2, base_args(idx_folder, run_dir, 3))


def test_two_replicas_train_as_one_device_does(one_device_run, two_replica_run):
    run_dir, result = two_replica_run
    assert result.returncode == 0, result.stderr[-3000:]
    # torchrun's two processes share the output: process 0 alone prints the summary and the progress lines.
    assert result.stdout.count("run directory:") == 1 and result.stderr.count("[kgen] data:") == 1, result.stdout
    config = json.loads((run_dir / "config.json").read_text())
    assert config["distribution"].split(":")[0] in ("jax-data-parallel", "tf-mirrored", "torch-ddp")
    final = "checkpoints/epoch-0003.weights.h5"
    differences = relative_difference(checkpoint_arrays(run_dir / final),
                                      checkpoint_arrays(one_device_run / final))
    worst = max(differences, key=differences.get)
    assert differences[worst] < TOLERANCE, (worst, differences[worst])
    histories = [json.loads((d / "metrics.json").read_text())["history"] for d in (run_dir, one_device_run)]
    for two, one in zip(*histories):  # every epoch's training and validation means
        assert two == pytest.approx(one, rel=TOLERANCE)


@pytest.mark.one_backend
def test_a_data_parallel_run_exports_like_any_run(two_replica_run, tmp_path):
    """Its model.keras is a plain model (written by process 0): `kgen export --check` serves it and the
    check in a fresh process matches every signature with the Keras model."""
    run_dir, result = two_replica_run
    assert result.returncode == 0, result.stderr[-3000:]
    exported = invoke("export", run_dir, "--out", tmp_path / "saved_models", "--check")
    assert exported.exit_code == 0, exported.output
    assert list((tmp_path / "saved_models").glob("*/1/saved_model.pb"))
    assert "reconstruct" in exported.output and "encode" in exported.output


def test_a_killed_two_replica_run_resumes_on_one_device(idx_folder, one_device_run, tmp_path):
    run_dir = tmp_path / "killed"
    cmd, env = command(2, [*base_args(idx_folder, run_dir, 3)[:-2], "--run-dir", str(run_dir)])
    process = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    latest, deadline = run_dir / "checkpoints" / "latest.json", time.time() + TIMEOUT
    try:
        while time.time() < deadline and process.poll() is None:
            try:
                if json.loads(latest.read_text())["epoch"] >= 1:
                    break
            except (OSError, ValueError, KeyError):
                pass
            time.sleep(0.05)
    finally:
        kill_tree(process.pid)  # every process of the run (torchrun's workers have process groups of their own)
        process.wait()
    completed = json.loads(latest.read_text())["epoch"]
    assert 1 <= completed < 3
    result = subprocess.run([str(KGEN), "train", "--resume", str(run_dir)], capture_output=True, text=True,
                            env=command(1, [])[1], timeout=TIMEOUT)
    assert result.returncode == 0 and f"after epoch {completed}" in result.stderr, result.stderr[-3000:]
    final = "checkpoints/epoch-0003.weights.h5"
    differences = relative_difference(checkpoint_arrays(run_dir / final), checkpoint_arrays(one_device_run / final))
    worst = max(differences, key=differences.get)
    assert differences[worst] < TOLERANCE, (worst, differences[worst])
