"""Data-parallel training (kgen.backend.distribution) against single-device training, on every backend.

The property: one data-parallel step over R replicas on a global batch B leaves every variable (the
networks' and each phase optimizer's slots and iterations) as one single-device step on the same
batch does, and so do the next steps, the logged metrics and the validation metrics. Checked for a
one-phase (ae), a two-phase with repeats (gan, d_steps 2) and a four-phase model (semi-supervised
aae), with their noise made a function of the example (tests/distributed_worker.py: ``batch_noise``)
so that both runs draw the same noise for the same example. Every run computes in float64
(``worker.float64``), so that the rounding of float32 sums cannot hide in, or be mistaken for, a
difference (kgen trains in float32: there the worst variable of the 2-replica AAE differed by
2.3e-5 after one step, in a discriminator whose gradient is a difference of nearly equal terms).

Distributed runs configure devices before the backend starts, so they run in subprocesses
(tests/distributed_worker.py): 2 local replicas (JAX and TensorFlow: the CPU split into 2 devices;
torch: 2 gloo processes, torch has no other kind), and several processes talking over 127.0.0.1
(JAX: 2 processes x 2 devices through jax.distributed; TensorFlow: 2 MultiWorkerMirroredStrategy
workers from TF_CONFIG; torch: the same 2 processes). Each fixture runs all the cases once.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

import distributed_worker as worker
from conftest import BACKEND, ROOT
from kgen.backend import distribution as kgen_distribution
from kgen.backend.distribution import Distribution, DistributionError

WORKER = Path(worker.__file__)
TOLERANCE = 1e-5  # relative error, per variable: ||a - b|| / ||b|| (the runs compute in float64)
LOG_TOLERANCE = 1e-5  # logged means
EQUIVALENCE_CASES = ("ae", "gan", "aae")
WORKER_TIMEOUT = 900  # seconds for a whole worker run (all cases); killed after


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_workers(out: Path, init: Path, per_process: list[tuple[list[str], dict]]) -> None:
    """Start one worker per entry (extra arguments, extra environment), wait for all, never leave one behind."""
    env = {**os.environ, "KERAS_BACKEND": BACKEND, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1",
           "TF_CPP_MIN_LOG_LEVEL": "2"}
    for name in ("TF_CONFIG", "XLA_FLAGS", "JAX_NUM_CPU_DEVICES", *kgen_distribution.TORCH_ENV, "LOCAL_RANK"):
        env.pop(name, None)
    logs, processes = [], []
    try:
        for i, (args, extra) in enumerate(per_process):
            log = open(out / f"worker-{i}.log", "w")
            logs.append(log)
            processes.append(subprocess.Popen(
                [sys.executable, str(WORKER), "--out", str(out), "--init", str(init), *args],
                env={**env, **extra}, stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
        for p in processes:
            p.wait(timeout=WORKER_TIMEOUT)
    finally:
        for p in processes:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        for log in logs:
            log.close()
    failed = [i for i, p in enumerate(processes) if p.returncode != 0]
    if failed:
        tail = (out / f"worker-{failed[0]}.log").read_text()[-3000:]
        pytest.fail(f"distributed worker {failed[0]} exited with {processes[failed[0]].returncode}:\n{tail}")


def torch_processes(n: int) -> list[tuple[list[str], dict]]:
    """What torchrun would give n local processes."""
    port = str(free_port())
    return [([], {"RANK": str(r), "LOCAL_RANK": str(r), "WORLD_SIZE": str(n), "MASTER_ADDR": "127.0.0.1",
                  "MASTER_PORT": port}) for r in range(n)]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("distributed")


@pytest.fixture(scope="module")
def initial(workdir) -> dict[str, list[np.ndarray]]:
    """Each case's starting values (model + optimizer state), written once for every run."""
    with worker.float64():
        values = {case: worker.initial_values(case) for case in worker.CASES}
    np.savez(workdir / "init.npz", **{f"{c}_{i}": a for c, arrays in values.items() for i, a in enumerate(arrays)})
    return values


@pytest.fixture(scope="module")
def single(initial) -> dict[str, dict]:
    """The single-device reference, in this process."""
    with worker.float64():
        return {case: worker.train_case(case, Distribution(), initial[case]) for case in worker.CASES}


def load_all(out: Path, processes: int) -> dict[str, list[dict]]:
    return {case: [worker.load(out / f"{case}-{p}") for p in range(processes)] for case in worker.CASES}


@pytest.fixture(scope="module")
def replicas(workdir, initial) -> dict[str, list[dict]]:
    """2 replicas on this machine: JAX / TensorFlow: one process, the CPU split in 2; torch: 2 processes."""
    out = workdir / "replicas"
    out.mkdir()
    per_process = torch_processes(2) if BACKEND == "torch" else [(["--devices", "2"], {})]
    run_workers(out, workdir / "init.npz", per_process)
    return load_all(out, len(per_process))


@pytest.fixture(scope="module")
def processes(workdir, initial, replicas) -> dict[str, list[dict]]:
    """2 processes over 127.0.0.1 (JAX: 2 devices each, 4 replicas, 2 steps per compiled call;
    TensorFlow: 2 workers; torch: as above)."""
    if BACKEND == "torch":
        return replicas  # torch's only engine is already 2 processes
    out = workdir / "processes"
    out.mkdir()
    if BACKEND == "jax":
        coordinator = f"127.0.0.1:{free_port()}"
        per_process = [(["--devices", "2", "--coordinator", coordinator, "--num-processes", "2",
                         "--process-id", str(p), "--steps-per-execution", "2"], {}) for p in range(2)]
    else:  # one step per execution: Distribution.max_steps_per_execution (keras#19246)
        coordinator = f"127.0.0.1:{free_port()},127.0.0.1:{free_port()}"
        per_process = [(["--coordinator", coordinator, "--num-processes", "2", "--process-id", str(p)], {})
                       for p in range(2)]
    run_workers(out, workdir / "init.npz", per_process)
    return load_all(out, 2)


# -- comparisons ------------------------------------------------------------------------------

def relative_errors(expected: list[np.ndarray], actual: list[np.ndarray]) -> list[float]:
    assert len(expected) == len(actual)
    errors = []
    for e, a in zip(expected, actual):
        assert e.shape == a.shape and e.dtype == a.dtype
        if not np.issubdtype(e.dtype, np.floating):
            errors.append(0.0 if np.array_equal(e, a) else np.inf)  # iterations, seed states: exact
            continue
        scale = np.linalg.norm(e)
        errors.append(float(np.linalg.norm(a - e) / scale) if scale else float(np.linalg.norm(a)))
    return errors


def own_seeds(result: dict) -> list[bool]:
    """Which variables are seed-generator states this replica folds its index into (not process 0's)."""
    if result["info"]["process"] == 0:
        return [False] * len(result["paths"])
    return [path.endswith("seed_generator_state") for path in result["paths"]]


def assert_same_state(expected: list[np.ndarray], result: dict, stage: str) -> None:
    """``result``'s variables after ``stage`` equal ``expected``; other processes than 0 keep their own
    seed states (replica r's seed is s + r * SEED_STRIDE), which are left out."""
    keep = [not own for own in own_seeds(result)]
    errors = relative_errors([e for e, k in zip(expected, keep) if k], [a for a, k in zip(result[stage], keep) if k])
    worst = int(np.argmax(errors))
    assert errors[worst] <= TOLERANCE, f"variable {worst} differs: relative error {errors[worst]:.3g}"


def assert_same_logs(expected: dict, actual: dict) -> None:
    for run in ("first", "more"):
        assert set(expected[run]) == set(actual[run])
        for name, value in expected[run].items():
            assert actual[run][name] == pytest.approx(value, rel=LOG_TOLERANCE, abs=1e-6), (run, name)


# -- the property ----------------------------------------------------------------------------------

@pytest.mark.parametrize("case", EQUIVALENCE_CASES)
def test_one_data_parallel_step_equals_one_single_device_step(case, single, replicas):
    for result in replicas[case]:
        assert result["info"]["replicas"] == 2
        assert_same_state(single[case]["first"], result, "first")


@pytest.mark.parametrize("case", EQUIVALENCE_CASES)
def test_more_steps_and_logged_metrics_match_single_device(case, single, replicas):
    for result in replicas[case]:
        assert_same_state(single[case]["more"], result, "more")
        assert_same_logs(single[case]["logs"], result["logs"])


@pytest.mark.parametrize("case", EQUIVALENCE_CASES)
def test_replicas_hold_identical_copies(case, replicas):
    """Weights and every optimizer slot stay equal on all devices (and processes)."""
    runs = replicas[case]
    for result in runs:
        assert result["inconsistent"] == []
    for other in runs[1:]:  # processes: everything but their own seed states
        keep = [not own for own in own_seeds(other)]
        pairs = [(a, b) for a, b, k in zip(runs[0]["more"], other["more"], keep) if k]
        assert all(np.array_equal(a, b) for a, b in pairs)


@pytest.mark.parametrize("case", EQUIVALENCE_CASES)
def test_several_processes_match_single_device(case, single, processes):
    runs = processes[case]
    assert runs[0]["info"]["processes"] == 2
    for result in runs:
        assert_same_state(single[case]["more"], result, "more")
        assert_same_logs(single[case]["logs"], result["logs"])
        assert result["inconsistent"] == []


def test_replicas_draw_different_noise(replicas, workdir):
    """With the model's real noise (z ~ N(0, I) of the GAN), the replicas' draws differ.

    JAX runs one global program: its draw is the single device's draw, so the real GAN's steps match
    single-device ones exactly. TensorFlow and torch run the step per replica and fold the replica
    index into the seed (replica 0 keeps the single-device seed)."""
    if BACKEND == "jax":
        pytest.skip("JAX draws one global array; see test_jax_real_noise_is_the_single_device_noise")
    out = workdir / "replicas"
    draws = np.concatenate([np.load(path) for path in sorted(out.glob("noise-*.npy"))])
    assert len(draws) == 2
    assert np.all(np.isfinite(draws)) and not np.allclose(draws[0], draws[1])


def test_jax_real_noise_is_the_single_device_noise(single, replicas):
    if BACKEND != "jax":
        pytest.skip("only JAX's data parallelism is one global program")
    assert_same_state(single["gan-real"]["more"], replicas["gan-real"][0], "more")


# -- the engine's description and the data it hands to fit() ----------------------------------

def test_single_device_configuration_is_plain():
    distribution = kgen_distribution.configure(devices=1, global_batch_size=7)
    assert distribution.kind == "none" and distribution.num_replicas == 1 and distribution.is_chief
    assert not distribution.is_distributed


def test_global_batch_must_split_evenly():
    distribution = Distribution("torch-ddp", num_replicas=4, num_processes=4)
    assert distribution.per_replica_batch_size(32) == 8
    for bad in (30, 2):
        with pytest.raises(DistributionError, match="multiple of 4"):
            distribution.per_replica_batch_size(bad)


def test_each_process_gets_its_slice_of_every_global_batch_and_no_partial_batch():
    import tensorflow as tf

    ds = tf.data.Dataset.range(20).batch(8)  # 8, 8 and a partial 4
    slices = [[b.numpy().tolist() for b in Distribution("torch-ddp", 2, p, 2).distribute_dataset(ds, 8)]
              for p in range(2)]
    assert slices[0] == [[0, 1, 2, 3], [8, 9, 10, 11]]
    assert slices[1] == [[4, 5, 6, 7], [12, 13, 14, 15]]


# -- what configure() refuses, in one line ------------------------------------------------------

def test_more_devices_than_exist_is_refused():
    with pytest.raises(DistributionError, match="more devices than this machine has|one device per process"):
        kgen_distribution.configure(devices=4096)


def test_multi_process_run_without_its_environment_is_refused(monkeypatch):
    for name in ("TF_CONFIG", "KERAS_DISTRIBUTION_JOB_ADDRESSES", *kgen_distribution.TORCH_ENV):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(DistributionError) as error:
        kgen_distribution.configure(num_processes=2)
    message = str(error.value)
    assert "\n" not in message
    if BACKEND == "torch":
        assert "torch.distributed.run" in message


def test_a_coordinator_that_does_not_answer_fails_within_the_timeout(monkeypatch):
    import time

    for name in ("TF_CONFIG", *kgen_distribution.TORCH_ENV):
        monkeypatch.delenv(name, raising=False)
    silent = f"127.0.0.1:{free_port()}"  # nothing listens there
    if BACKEND == "torch":
        host, port = silent.split(":")
        for name, value in {"RANK": "1", "WORLD_SIZE": "2", "MASTER_ADDR": host, "MASTER_PORT": port}.items():
            monkeypatch.setenv(name, value)
        arguments = {}
    elif BACKEND == "tensorflow":
        arguments = {"coordinator": f"{silent},127.0.0.1:{free_port()}", "num_processes": 2, "process_id": 1}
    else:
        arguments = {"coordinator": silent, "num_processes": 2, "process_id": 1}
    start = time.monotonic()
    with pytest.raises(DistributionError, match="did not answer within 1 s"):
        kgen_distribution.configure(timeout=1, **arguments)
    assert time.monotonic() - start < 30


def test_tensorflow_distribution_runs_one_step_per_execution():
    assert Distribution("tf-mirrored", 2).max_steps_per_execution == 1
    assert Distribution("jax-data-parallel", 2).max_steps_per_execution is None


def test_logs_say_which_engine():
    assert "4 replicas on 2 processes" in Distribution("torch-ddp", 4, 0, 2, 2, ("cuda:0", "cuda:1")).describe()
