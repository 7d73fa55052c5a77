"""`kgen tune` over several processes with KerasTuner's own chief/worker mode, on every backend: a chief
and two workers on 127.0.0.1 share one search, one worker is killed (SIGKILL) in the middle of a trial and
restarted; a worker without a chief and a chief without a port are one line. The chief's watch over its
workers (a worker that never comes back) is checked in this process on KerasTuner's own oracle."""

from __future__ import annotations

import csv
import json
import signal
import socket
import subprocess
import time
from pathlib import Path

import keras_tuner
import pytest
from conftest import BACKEND, ROOT, invoke, start_kgen
from keras_tuner.src import protos
from keras_tuner.src.engine import trial as trial_module
from test_tune import TINY_AE, scalars

from kgen.tuning import distributed
from kgen.tuning.settings import (
    DistributedSearch,
    distributed_search,
)

TIMEOUT = 300  # seconds for a whole search of 4 tiny trials on a loaded 2-core machine


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def results(tuner_dir: Path) -> list[dict]:
    with open(tuner_dir / "results.csv", newline="") as f:
        return list(csv.DictReader(f))


def ongoing(tuner_dir: Path) -> dict[str, str]:
    """worker -> the trial the chief's oracle says it trains (KerasTuner's oracle.json)."""
    try:
        return json.loads((tuner_dir / "search" / "oracle.json").read_text())["ongoing_trials"]
    except (OSError, ValueError, KeyError):
        return {}  # not written yet, or read while KerasTuner rewrites it


def training(tuner_dir: Path, trial: str) -> bool:
    """Whether ``trial`` has started to train: its TensorBoard folder is made when fit() begins."""
    return (tuner_dir / "logs" / trial / "execution0").is_dir()


class Process:
    """A `kgen tune` process whose output goes to files (a pipe nobody reads would block it)."""

    def __init__(self, args: list, log: Path):
        self.log = log
        # The process's part comes from its flags (which win over KerasTuner's variables): the
        # environment of this test process is left as it is.
        with open(f"{log}.out", "w") as out, open(f"{log}.err", "w") as err:
            self.popen = start_kgen(*args, env={"PYTHONPATH": str(ROOT)}, stdout=out, stderr=err,
                                    start_new_session=True)

    def wait(self, timeout: float = TIMEOUT) -> int:
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()
            raise AssertionError(f"{self.log.name} did not finish in {timeout} s:\n{self.stderr[-3000:]}") from None

    @property
    def stdout(self) -> str:
        return Path(f"{self.log}.out").read_text()

    @property
    def stderr(self) -> str:
        return Path(f"{self.log}.err").read_text()


# -- a chief and two workers, one of them killed and restarted ------------------------------------
# Each suite run (one per backend) runs one search of several processes with a worker killed in it: on
# TensorFlow a worker restarted under its name (this fixture: four process starts, ~70 s on 2 cores),
# on torch a worker that never comes back (test_a_worker_that_never_comes_back_...: three); JAX's pass
# trains no distributed search (it is the slowest pass, and the protocol does not depend on the backend). The
# protocol, the chief's watch and the heartbeats are gRPC and threads, the same on every backend; the
# backend trains inside each trial, as in every `kgen tune` (tests/test_tune.py, on every backend).
FULL_SEARCH_BACKEND = "tensorflow"


@pytest.fixture(scope="module")
def search(idx_folder, tmp_path_factory) -> dict:
    """4 trials of a tiny AE, 2 epochs each, shared by tuner1 and tuner2 through a chief on 127.0.0.1;
    tuner1 is killed (SIGKILL) while it trains its second trial and started again under its name."""
    if BACKEND != FULL_SEARCH_BACKEND:
        pytest.skip(f"the search with a restarted worker runs with the {FULL_SEARCH_BACKEND} suite")
    folder = tmp_path_factory.mktemp("dtune")
    tuner_dir = folder / "search"
    # --worker-timeout: longer than a restart takes on a loaded machine, so the chief waits for tuner1.
    args = ["tune", "ae", "--dataset", idx_folder, "--tuner", "random", "--max-trials", 4, "--epochs", 2, *TINY_AE,
            "--best-grids", 1, "--tuner-dir", tuner_dir, "--oracle", f"127.0.0.1:{free_port()}",
            "--worker-timeout", TIMEOUT]
    chief = Process([*args, "--tuner-id", "chief"], folder / "chief")
    tuner1 = Process([*args, "--tuner-id", "tuner1"], folder / "tuner1")
    tuner2 = Process([*args, "--tuner-id", "tuner2"], folder / "tuner2")
    processes = [chief, tuner1, tuner2]
    try:
        # Kill tuner1 once it has finished a trial and trains the next one.
        first, killed_trial, deadline = None, None, time.time() + TIMEOUT
        while killed_trial is None and time.time() < deadline and tuner1.popen.poll() is None:
            trial = ongoing(tuner_dir).get("tuner1")
            first = first or trial
            if trial not in (None, first) and training(tuner_dir, trial):
                killed_trial = trial
            else:
                time.sleep(0.02)
        assert killed_trial is not None, f"tuner1 never started a second trial:\n{tuner1.stderr[-3000:]}"
        tuner1.popen.send_signal(signal.SIGKILL)
        tuner1.popen.wait()
        killed_at = time.time()
        before = results(tuner_dir)
        restarted = Process([*args, "--tuner-id", "tuner1"], folder / "tuner1-restarted")
        processes.append(restarted)
        codes = {p.log.name: p.wait() for p in (chief, tuner2, restarted)}
    finally:
        for process in processes:
            if process.popen.poll() is None:
                process.popen.kill()
                process.popen.wait()
    return {"dir": tuner_dir, "codes": codes, "chief": chief, "tuner2": tuner2, "restarted": restarted,
            "first": first, "killed_trial": killed_trial, "killed_at": killed_at, "before": before}


def trained(worker: Process) -> list[str]:
    """The trials a worker says it trained (its last line)."""
    line = worker.stdout.strip().splitlines()[-1]
    assert line.startswith("worker ") and " trained trials: " in line, line
    return line.split(" trained trials: ")[1].split(";")[0].split(", ")


def test_every_trial_is_in_the_chiefs_results_exactly_once(search):
    assert search["codes"] == {"chief": 0, "tuner2": 0, "tuner1-restarted": 0}, search["chief"].stderr[-3000:]
    rows = results(search["dir"])
    assert [r["trial"] for r in rows] == ["0", "1", "2", "3"]
    assert {r["status"] for r in rows} == {"COMPLETED"} and all(float(r["val_loss"]) > 0 for r in rows)
    # Every trial trained to its end by one worker: tuner1 before the kill, tuner1 restarted, or tuner2.
    by_tuner2, by_restarted = trained(search["tuner2"]), trained(search["restarted"])
    assert by_tuner2 and not set(by_tuner2) & set(by_restarted)
    assert sorted({search["first"], *by_tuner2, *by_restarted}) == ["0", "1", "2", "3"]
    assert "Traceback" not in search["chief"].stderr


def test_a_killed_worker_loses_no_finished_trial_and_its_trial_is_trained_again(search):
    tuner_dir, killed = search["dir"], search["killed_trial"]
    finished = [r for r in search["before"] if r["status"] == "COMPLETED"]
    assert any(r["trial"] == search["first"] for r in finished)  # tuner1's own finished trial among them
    after = {r["trial"]: r for r in results(tuner_dir)}
    assert all(after[r["trial"]] == r for r in finished)  # kept as they were
    # KerasTuner gives the restarted worker its unfinished trial back; the chief says so once.
    lines = [line for line in search["chief"].stderr.splitlines() if "came back" in line]
    assert lines == [f"[kgen] worker tuner1 came back without finishing trial {killed}: it trains that trial again"]
    assert killed in trained(search["restarted"])
    # Trained again from the start: a fresh TensorBoard folder with both epochs, written after the kill.
    train = tuner_dir / "logs" / killed / "execution0" / "train"
    assert [f.stat().st_mtime > search["killed_at"] for f in train.iterdir()] == [True]
    assert set(scalars(train, "epoch_loss")) == {1, 2}
    assert after[killed]["status"] == "COMPLETED"


def test_the_chief_writes_the_best_config_of_the_best_trial_any_worker_trained(search):
    tuner_dir, output = search["dir"], search["chief"].stdout
    rows = results(tuner_dir)
    best = min(rows, key=lambda r: float(r["val_loss"]))
    assert f"best: trial {best['trial']}, val_loss = {float(best['val_loss']):.6g} (min)" in output
    config = json.loads((tuner_dir / "best_config.json").read_text())
    assert config["model"] == "ae" and config["model_options"] == {"hidden": 16, "latent_dim": 4}
    assert config["learning_rate"] == pytest.approx(float(best["learning_rate"]), rel=1e-12)
    assert config["epochs"] == 2 and config["steps_per_epoch"] == 2
    # The best trial's checkpoint, written by a worker into the shared tuner directory, drew its grids.
    assert (tuner_dir / "best" / f"1-trial_{best['trial']}" / "reconstructions-epoch-0002.png").is_file()
    assert json.loads((tuner_dir / "tune.json").read_text())["max_trials"] == 4  # the chief's settings


def wait_for(condition, what: str, timeout: float = TIMEOUT) -> None:
    deadline = time.time() + timeout
    while not condition():
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


# The other scenario (three processes, about a minute) runs once per `make test` too, in another pass.
NEVER_RESTARTED_BACKEND = "torch"


@pytest.mark.skipif(BACKEND != NEVER_RESTARTED_BACKEND,
                    reason=f"the search whose worker never comes back runs with the {NEVER_RESTARTED_BACKEND} suite")
def test_a_worker_that_never_comes_back_has_its_trial_trained_by_another(idx_folder, tmp_path):
    tuner_dir = tmp_path / "search"
    args = ["tune", "ae", "--dataset", idx_folder, "--max-trials", 2, "--epochs", 1, *TINY_AE, "--best-grids", 0,
            "--tuner-dir", tuner_dir, "--oracle", f"127.0.0.1:{free_port()}", "--worker-timeout", 4]
    chief = Process([*args, "--tuner-id", "chief"], tmp_path / "chief")
    tuner1 = Process([*args, "--tuner-id", "tuner1"], tmp_path / "tuner1")
    processes = [chief, tuner1]
    try:
        wait_for(lambda: training(tuner_dir, ongoing(tuner_dir).get("tuner1", "-")), "tuner1 to train its first trial")
        killed = ongoing(tuner_dir)["tuner1"]
        tuner1.popen.send_signal(signal.SIGKILL)
        tuner1.popen.wait()
        # A new worker, under another name: it starts for longer than the chief waits for tuner1. (4 s:
        # four missed heartbeats, so that a loaded machine does not make tuner2 look lost too.)
        tuner2 = Process([*args, "--tuner-id", "tuner2"], tmp_path / "tuner2")
        processes.append(tuner2)
        assert (chief.wait(), tuner2.wait()) == (0, 0), chief.stderr[-3000:]
    finally:
        for process in processes:
            if process.popen.poll() is None:
                process.popen.kill()
                process.popen.wait()
    lost = [line for line in chief.stderr.splitlines() if " lost: " in line]
    assert len(lost) == 1 and lost[0].startswith("[kgen] worker tuner1 lost: no word from it for ")
    assert lost[0].endswith(f"(--worker-timeout 4) while it trained trial {killed}: the trial goes back to the "
                            "queue, the next worker trains it")
    # tuner2 trained the given-up trial and the other; its heartbeats kept it from being given up.
    assert sorted(trained(tuner2)) == ["0", "1"]
    rows = results(tuner_dir)
    assert [(r["trial"], r["status"]) for r in rows] == [("0", "COMPLETED"), ("1", "COMPLETED")]
    best = min(rows, key=lambda r: float(r["val_loss"]))
    assert json.loads((tuner_dir / "best_config.json").read_text())["learning_rate"] == pytest.approx(
        float(best["learning_rate"]), rel=1e-12)
    assert f"best: trial {best['trial']}, val_loss = {float(best['val_loss']):.6g} (min)" in chief.stdout


# -- bad input ----------------------------------------------------------------------------------
@pytest.mark.one_backend
def test_a_worker_without_a_chief_is_one_line_in_bounded_time(idx_folder, tmp_path):
    port = free_port()
    start = time.time()
    result = invoke("tune", "ae", "--dataset", idx_folder, "--tuner-dir", tmp_path / "t", "--oracle",
                    f"127.0.0.1:{port}", "--tuner-id", "tuner1", "--oracle-timeout", 1)
    assert result.exit_code == 2, result.output
    assert result.output.splitlines()[-1] == (
        f"kgen: error: no oracle answered at 127.0.0.1:{port} within 1 s; start the chief first "
        f"(`kgen tune ... --oracle HOST:{port} --tuner-id chief`) or raise --oracle-timeout")
    assert time.time() - start < 30 and not (tmp_path / "t").exists()


@pytest.mark.one_backend
def test_a_chief_whose_port_is_taken_is_one_line(idx_folder, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = invoke("tune", "ae", "--dataset", idx_folder, "--tuner-dir", tmp_path / "t", "--oracle",
                        f"127.0.0.1:{port}", "--tuner-id", "chief")
    assert result.exit_code == 2, result.output
    assert result.output.splitlines()[-1].startswith(f"kgen: error: --oracle 127.0.0.1:{port}: the chief cannot "
                                                     "listen there (Address already in use)")
    assert not (tmp_path / "t").exists()


def test_the_flags_or_kerastuners_variables_place_a_process_in_the_search():
    assert distributed_search(environ={}) is None
    worker = distributed_search("10.0.0.5:8000", "tuner3", environ={})
    assert worker == DistributedSearch("10.0.0.5", 8000, "tuner3") and not worker.is_chief
    assert worker.environment() == {"KERASTUNER_TUNER_ID": "tuner3", "KERASTUNER_ORACLE_IP": "10.0.0.5",
                                    "KERASTUNER_ORACLE_PORT": "8000"}
    launched = {"KERASTUNER_TUNER_ID": "chief", "KERASTUNER_ORACLE_IP": "0.0.0.0", "KERASTUNER_ORACLE_PORT": "9000"}
    assert distributed_search(environ=launched) == DistributedSearch("0.0.0.0", 9000, "chief")
    assert distributed_search("h:1", "tuner1", 5, environ=launched) == DistributedSearch("h", 1, "tuner1", 5.0)
    refused = {
        ("h:0", "chief"): "--oracle must be HOST:PORT with a port in 1..65535",
        ("h", "chief"): "--oracle must be HOST:PORT",
        ("::1:80", "chief"): "--oracle must be HOST:PORT",
        ("h:80", None): "needs --tuner-id",
        (None, "tuner1"): "give the oracle's --oracle HOST:PORT too",
        ("h:80", "sub-chief"): "must not contain 'chief'",
        ("h:80", "a b"): "--tuner-id must be chief or a name",
    }
    for (oracle, tuner_id), message in refused.items():
        with pytest.raises(ValueError, match=message.replace("(", r"\(")):
            distributed_search(oracle, tuner_id, environ={})
    with pytest.raises(ValueError, match="KERASTUNER_ORACLE_IP is set but KERASTUNER_ORACLE_PORT is not"):
        distributed_search(environ={"KERASTUNER_ORACLE_IP": "h", "KERASTUNER_TUNER_ID": "tuner1"})
    with pytest.raises(ValueError, match="--worker-timeout must be > 0 seconds"):
        distributed_search("h:80", "chief", worker_timeout=0, environ={})


# -- the chief's watch over its workers, on KerasTuner's oracle -----------------------------------
@pytest.fixture
def oracle(tmp_path):
    """KerasTuner's random-search oracle of a one-value space, with trials 0 and 1 running on tuner1 and tuner2."""
    space = keras_tuner.HyperParameters()
    space.Float("learning_rate", 1e-4, 1e-2, sampling="log")
    oracle = keras_tuner.oracles.RandomSearchOracle(keras_tuner.Objective("val_loss", "min"), max_trials=4,
                                                    hyperparameters=space, seed=1)
    oracle._set_project_dir(str(tmp_path), "search")
    oracle.verbose = 0
    assert [oracle.create_trial(name).trial_id for name in ("tuner1", "tuner2")] == ["0", "1"]
    return oracle


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_worker_that_never_comes_back_gives_its_trial_to_the_next_then_fails_it(oracle):
    clock, lines, changed = Clock(), [], []
    watch = distributed.WorkerWatch(oracle, timeout=10, clock=clock, report=lines.append, on_change=changed.append)
    watch.heard("tuner1"), watch.heard("tuner2")
    clock.now = 6
    watch.heard_about("1")  # tuner2's heartbeat
    clock.now = 12
    watch.check()
    assert lines == [("worker tuner1 lost: no word from it for 12 s (--worker-timeout 10) while it trained trial 0: "
                      "the trial goes back to the queue, the next worker trains it")] and changed == ["0"]
    assert {k: t.trial_id for k, t in oracle.ongoing_trials.items()} == {"tuner2": "1"}
    assert "tuner1" not in oracle.tuner_ids  # KerasTuner's chief does not wait for it any more
    assert oracle.create_trial("tuner3").trial_id == "0"  # KerasTuner's retry queue comes first
    watch.heard("tuner3"), watch.heard("tuner2")
    clock.now = 30
    watch.heard("tuner2")
    watch.check()
    assert lines[1] == ("worker tuner3 lost: no word from it for 18 s (--worker-timeout 10) while it trained trial 0, "
                        "which had lost a worker before: the trial is FAILED")
    assert oracle.trials["0"].status == "FAILED" and oracle.end_order == ["0"] and changed == ["0", "0"]
    assert {k: t.trial_id for k, t in oracle.ongoing_trials.items()} == {"tuner2": "1"}


def test_the_chief_ignores_a_late_result_and_says_when_a_worker_comes_back(oracle):
    lines = []
    watch = distributed.WorkerWatch(oracle, timeout=10, report=lines.append)
    servicer = distributed.WatchedOracleServicer(oracle, watch, on_trial_end=lambda trial_id: None, max_failures=3)
    service = protos.get_service()
    again = servicer.CreateTrial(service.CreateTrialRequest(tuner_id="tuner1"), None)
    assert trial_module.Trial.from_proto(again.trial).trial_id == "0"
    assert lines == ["worker tuner1 came back without finishing trial 0: it trains that trial again"]
    distributed._give_away(oracle, "tuner1", watch.lost, "worker tuner1 lost")
    late = oracle.trials["0"].to_proto()
    late.status = trial_module.TrialStatus.to_proto("COMPLETED")
    servicer.EndTrial(service.EndTrialRequest(trial=late), None)
    assert lines[-1] == ("ignored a result for trial 0: no worker trains it any more (its worker was given up for "
                         "lost, or another worker finished it first)")
    assert oracle.trials["0"].status == "RUNNING" and oracle.end_order == []
