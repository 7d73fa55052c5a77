"""A search spread over processes and hosts: KerasTuner's own chief/worker mode, watched by kgen.

KerasTuner runs a distributed search from three environment variables (``KERASTUNER_TUNER_ID``,
``KERASTUNER_ORACLE_IP``, ``KERASTUNER_ORACLE_PORT``): the chief serves the oracle over gRPC
(``keras_tuner/src/distribute/oracle_chief.py``), every worker's tuner wraps its oracle in an
``OracleClient`` that asks the chief for trials and reports their results. kgen keeps that protocol,
the servicer and the clients as they are, and adds what KerasTuner leaves out:

- a worker that comes back under its name after a crash gets its unfinished trial again (KerasTuner's
  ``Oracle.create_trial``); the chief says so in one line;
- a worker that never comes back would hold its trial, and the chief, forever (KerasTuner's chief
  waits until every running trial has ended). Workers send a heartbeat while they train (``Heartbeat``);
  the chief gives the trial of a worker silent for ``--worker-timeout`` back to KerasTuner's retry
  queue, so that the next worker to ask trains it (``WorkerWatch``), and marks it FAILED if it loses
  a second worker;
- results.csv is written by the chief after every trial any worker finishes;
- a worker started without a chief fails in bounded time (KerasTuner's clients wait an hour).

That is why the chief runs kgen's ``serve`` loop around KerasTuner's ``OracleServicer`` instead of
``oracle_chief.start_server``: the latter cannot watch workers, report trial ends, stop the server or
say that its port is taken, and it polls for the end of the search every 20 s.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent import futures

import grpc
from keras_tuner.src import protos
from keras_tuner.src.distribute import oracle_chief
from keras_tuner.src.engine import trial as trial_module
from keras_tuner.src.engine.oracle import synchronized

from kgen.tuning.settings import KERASTUNER_VARIABLES, DistributedSearch

HEARTBEAT_S = 1.0  # a training worker's heartbeat: far below any sensible --worker-timeout
POLL_S = 0.2  # how often the chief looks at its workers and at the end of the search
LOST_WORKERS_PER_TRIAL = 2  # a trial whose second worker is lost too is FAILED (it may be what kills them)


class OracleUnreachable(ValueError):
    """No oracle answered at the address a worker was given: the message is for the user."""


def say(message: str) -> None:
    print(f"[kgen] {message}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def kerastuner_environment(search: DistributedSearch) -> Iterator[None]:
    """KerasTuner's variables for this process's part while its tuner is made and searches; the
    environment as it was afterwards (a library call leaves no cluster description behind)."""
    before = {name: os.environ.get(name) for name in KERASTUNER_VARIABLES}
    os.environ.update(search.environment())
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def check_can_listen(search: DistributedSearch) -> None:
    """Before the chief loads any data: ValueError when it cannot serve on ``search.address``."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind((search.host, search.port))
    except OSError as exc:
        raise ValueError(f"--oracle {search.address}: the chief cannot listen there ({exc.strerror or exc}); "
                         "give a free port and an address of this host (0.0.0.0: all of them)") from None


def wait_for_oracle(search: DistributedSearch) -> None:
    """Before a worker loads any data: OracleUnreachable unless an oracle answers within
    ``search.oracle_timeout`` (asked for its search space, as every KerasTuner worker first does)."""
    # Retry a refused connection every second rather than after gRPC's growing backoff: a chief that
    # starts a little after its workers is found at once.
    channel = grpc.insecure_channel(search.address, options=[("grpc.initial_reconnect_backoff_ms", 250),
                                                             ("grpc.min_reconnect_backoff_ms", 250),
                                                             ("grpc.max_reconnect_backoff_ms", 1000)])
    try:
        protos.get_service_grpc().OracleStub(channel).GetSpace(
            protos.get_service().GetSpaceRequest(), wait_for_ready=True, timeout=search.oracle_timeout)
    except grpc.RpcError:
        raise OracleUnreachable(
            f"no oracle answered at {search.address} within {search.oracle_timeout:g} s; start the chief first "
            f"(`kgen tune ... --oracle HOST:{search.port} --tuner-id chief`) or raise --oracle-timeout") from None
    finally:
        channel.close()


# -- the worker's side ---------------------------------------------------------------------------
class Heartbeat:
    """While a worker trains a trial, ask the oracle for that trial every ``interval`` seconds: the
    chief takes each call as word from the worker (``WorkerWatch``). A thread, so that a long epoch
    or a slow compilation does not look like a dead worker."""

    def __init__(self, stub, trial_id: str, interval: float = HEARTBEAT_S):
        self.stub, self.trial_id, self.interval = stub, trial_id, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"kgen-heartbeat-{trial_id}", daemon=True)

    def start(self) -> Heartbeat:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5 * self.interval)

    def _beat(self) -> None:
        request = protos.get_service().GetTrialRequest(trial_id=self.trial_id)
        while not self._stop.wait(self.interval):
            try:
                self.stub.GetTrial(request, timeout=5 * self.interval)
            except grpc.RpcError:
                pass  # the oracle is away; KerasTuner's own calls wait for it and report it


# -- the chief's side ----------------------------------------------------------------------------
class WorkerWatch:
    """When the chief last heard from each worker; gives away the trial of one silent for ``timeout``.

    ``clock`` and ``report`` are the time and the line printer (tests give their own); ``on_change(trial_id)``
    runs after a trial was given away.
    """

    def __init__(self, oracle, timeout: float, clock: Callable[[], float] = time.monotonic,
                 report: Callable[[str], None] = say, on_change: Callable[[str], None] = lambda trial_id: None):
        self.oracle, self.timeout, self.clock, self.report, self.on_change = oracle, timeout, clock, report, on_change
        self.last_heard: dict[str, float] = {}
        self.lost = Counter()  # trial id -> workers lost while training it

    def heard(self, tuner_id: str) -> None:
        self.last_heard[tuner_id] = self.clock()

    def owner(self, trial_id: str) -> str | None:
        """The worker training ``trial_id`` now (None: the trial is not running)."""
        for tuner_id, trial in list(self.oracle.ongoing_trials.items()):
            if trial.trial_id == trial_id:
                return tuner_id
        return None

    def heard_about(self, trial_id: str) -> None:
        owner = self.owner(trial_id)
        if owner is not None:
            self.heard(owner)

    def check(self) -> None:
        """Give away the trials of workers silent for longer than ``timeout``; forget silent workers
        that train nothing (killed between two trials), for whom KerasTuner's chief would wait forever."""
        now = self.clock()
        for tuner_id in list(self.oracle.tuner_ids):
            silent = now - self.last_heard.setdefault(tuner_id, now)
            if silent > self.timeout and _forget_idle(self.oracle, tuner_id):
                self.report(f"worker {tuner_id} left between two trials: no word from it for {silent:.0f} s")
        for tuner_id, trial in list(self.oracle.ongoing_trials.items()):
            silent = now - self.last_heard.setdefault(tuner_id, now)
            if silent > self.timeout:
                line = _give_away(self.oracle, tuner_id, self.lost,
                                  f"worker {tuner_id} lost: no word from it for {silent:.0f} s (--worker-timeout "
                                  f"{self.timeout:g})")
                if line:
                    self.report(line)
                    self.on_change(trial.trial_id)


@synchronized
def _give_away(oracle, tuner_id: str, lost: Counter, why: str) -> str | None:
    """Under the oracle's lock: take the running trial from ``tuner_id`` and put it in KerasTuner's retry
    queue (``create_trial`` hands queued trials out first), or end it FAILED when it has now lost
    ``LOST_WORKERS_PER_TRIAL`` workers. The line saying which; None if the trial ended meanwhile."""
    trial = oracle.ongoing_trials.get(tuner_id)
    if trial is None:
        return None
    oracle.tuner_ids.discard(tuner_id)  # KerasTuner's chief ends once no worker is left in it
    lost[trial.trial_id] += 1
    if lost[trial.trial_id] >= LOST_WORKERS_PER_TRIAL:
        trial.status = trial_module.TrialStatus.FAILED
        trial.message = f"FailedTrialError: {lost[trial.trial_id]} workers were lost while training it"
        oracle.end_trial(trial)  # KerasTuner's own ending: recorded, saved, no longer running
        return f"{why} while it trained trial {trial.trial_id}, which had lost a worker before: the trial is FAILED"
    del oracle.ongoing_trials[tuner_id]
    oracle._retry_queue.append(trial.trial_id)
    oracle.save()
    return f"{why} while it trained trial {trial.trial_id}: the trial goes back to the queue, the next worker trains it"


@synchronized
def _forget_idle(oracle, tuner_id: str) -> bool:
    """Under the oracle's lock: stop waiting for ``tuner_id`` if it trains no trial (True if so)."""
    if tuner_id in oracle.ongoing_trials or tuner_id not in oracle.tuner_ids:
        return False
    oracle.tuner_ids.discard(tuner_id)
    return True


def _consecutive_failures(oracle) -> int:
    """How many trials failed in a row at the end of the search so far (KerasTuner's count)."""
    count = 0
    for trial_id in reversed(oracle.end_order):
        if oracle.trials[trial_id].status != trial_module.TrialStatus.FAILED:
            break
        count += 1
    return count


@synchronized
def _stop_worker(oracle, tuner_id: str):
    """A STOPPED trial for ``tuner_id``: what KerasTuner's oracle answers a worker when the search is over."""
    oracle.tuner_ids.discard(tuner_id)
    return trial_module.Trial(oracle.get_space(), status=trial_module.TrialStatus.STOPPED)


class WatchedOracleServicer(oracle_chief.OracleServicer):
    """KerasTuner's oracle service, with kgen's bookkeeping around its calls: who was heard from when,
    a line for a worker that comes back, the trial-end hook (results.csv), results of trials that no
    longer run ignored, and no new trials once ``max_failures`` trials failed in a row."""

    def __init__(self, oracle, watch: WorkerWatch, on_trial_end: Callable[[str], None], max_failures: int | None):
        super().__init__(oracle)
        self.watch, self.on_trial_end, self.max_failures = watch, on_trial_end, max_failures
        self.failed_search = False

    def CreateTrial(self, request, context):  # gRPC's method names, as KerasTuner's servicer
        self.watch.heard(request.tuner_id)
        if self.failed_search:
            self.stop_triggered = True
            return protos.get_service().CreateTrialResponse(trial=_stop_worker(self.oracle, request.tuner_id).to_proto())
        unfinished = self.oracle.ongoing_trials.get(request.tuner_id)
        if unfinished is not None:  # it crashed and was restarted before the chief gave its trial away
            self.watch.report(f"worker {request.tuner_id} came back without finishing trial {unfinished.trial_id}: "
                              "it trains that trial again")
        return super().CreateTrial(request, context)

    def GetTrial(self, request, context):  # also a worker's heartbeat
        self.watch.heard_about(request.trial_id)
        return super().GetTrial(request, context)

    def UpdateTrial(self, request, context):
        if self.watch.owner(request.trial_id) is None:
            return protos.get_service().UpdateTrialResponse(trial=self.oracle.get_trial(request.trial_id).to_proto())
        self.watch.heard_about(request.trial_id)
        return super().UpdateTrial(request, context)

    def EndTrial(self, request, context):
        trial_id = request.trial.trial_id
        if self.watch.owner(trial_id) is None:
            # A worker given up for lost finished after all while its trial waits in the queue, or a
            # second result for a trial whose first one has come: the oracle keeps one per trial.
            self.watch.report(f"ignored a result for trial {trial_id}: no worker trains it any more (its worker "
                              "was given up for lost, or another worker finished it first)")
            return protos.get_service().EndTrialResponse()
        self.watch.heard_about(trial_id)
        response = super().EndTrial(request, context)
        if self.max_failures and _consecutive_failures(self.oracle) >= self.max_failures:
            self.failed_search = True
        self.on_trial_end(trial_id)
        return response


def serve(oracle, search: DistributedSearch, on_trial_end: Callable[[str], None]) -> bool:
    """Serve ``oracle`` to the workers until the search is over: the oracle has told a worker to stop
    and no trial runs and no worker waits (KerasTuner's ``exit_chief``). ``on_trial_end(trial_id)``
    runs after every trial a worker ends or the chief gives up. True when the search stopped because
    ``oracle.max_consecutive_failed_trials`` trials failed in a row."""
    # KerasTuner raises inside end_trial after too many failures in a row, with the oracle's lock held
    # and the trial half recorded; the chief counts them itself once each trial is fully recorded.
    max_failures, oracle.max_consecutive_failed_trials = oracle.max_consecutive_failed_trials, None
    watch = WorkerWatch(oracle, search.worker_timeout, on_change=on_trial_end)
    servicer = WatchedOracleServicer(oracle, watch, on_trial_end, max_failures)
    # One thread, as KerasTuner's chief: the oracle's calls are serialised anyway. Without
    # so_reuseport a second chief on the same port fails instead of sharing it.
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1), options=[("grpc.so_reuseport", 0)])
    protos.get_service_grpc().add_OracleServicer_to_server(servicer, server)
    try:
        bound = server.add_insecure_port(search.address)
    except RuntimeError:
        bound = 0
    if not bound:
        raise ValueError(f"--oracle {search.address}: the chief cannot listen there (in use?)")
    server.start()
    say(f"oracle serving at {search.address}; start the workers with `kgen tune ... --oracle "
        f"<this host>:{search.port} --tuner-id NAME`")
    try:
        while not (servicer.stop_triggered and oracle_chief.exit_chief(oracle)):
            time.sleep(POLL_S)
            watch.check()
    finally:
        server.stop(grace=1).wait()
        oracle.max_consecutive_failed_trials = max_failures
    return servicer.failed_search
