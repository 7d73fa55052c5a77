"""Data-parallel training on several devices and hosts, on each backend's own engine.

One object, :class:`Distribution`, describes the engine this process runs under; ``configure()``
makes it (call it first thing, before any data or model is created: TensorFlow and JAX fix their
device lists the first time they run anything). Every engine does the same thing:

* R replicas (devices x processes) hold identical copies of every variable (weights, BatchNorm
  statistics, each phase optimizer's slots and iterations);
* every global batch of B examples is split into R equal, contiguous slices (replica r gets
  examples [r B/R, (r+1) B/R) of it);
* in each phase, every replica differentiates the phase loss on its slice; the gradients are
  averaged over the replicas and every replica applies the same update. A phase loss that is a mean
  over examples then gets exactly the gradient of the loss on the whole global batch:
  grad mean_B l = (1/R) sum_r grad mean_{B/R, r} l. So one data-parallel step equals one single-device
  step on the same global batch (tests/test_distributed.py checks it to 1e-5 for one-, two- and
  four-phase models).

The engines:

* ``jax-data-parallel``: ``keras.distribution.DataParallel`` (GSPMD). The step is ONE global
  program over a device mesh; XLA inserts the all-reduces. Everything is computed as on one device:
  batch-level statistics (BatchNorm batch moments, the AAE's batch marginal) use the global batch,
  and random noise is the same global draw a single device makes. Multi-host: ``jax.distributed``.
* ``tf-mirrored`` / ``tf-multi-worker``: ``tf.distribute.MirroredStrategy`` (one host) /
  ``MultiWorkerMirroredStrategy`` (``TF_CONFIG``). Keras runs ``train_step`` once per replica on
  its slice; kgen's TensorFlow shell averages each phase's gradients and logged scalars with ONE
  ``all_reduce`` per phase (Keras's TF optimizer would SUM gradients in ``apply``; the shell turns that
  off for the optimizers it has already reduced for, see ``tensorflow.py``).
* ``torch-ddp``: ``torch.distributed`` processes as ``torchrun`` launches them (gloo on CPU, NCCL on
  GPU), one device per process. kgen's torch shell all-reduces each phase's gradients (and the
  logged scalars) in one flat buffer per phase. ``DistributedDataParallel`` itself is not used:
  it all-reduces through the wrapped module's ``forward`` only, and kgen's phases call sub-networks
  directly, so DDP would silently skip the reduction.

What stays per replica on TensorFlow and torch (the step runs separately on each slice there):
batch-level statistics (BatchNorm batch moments, the clustering AAE's batch marginal of y, any
loss that is not a mean over examples) and BatchNorm's moving averages (each replica updates its
own; replica 0's are the ones saved, as with DDP). Random noise: replica r's seed generators hold
``[s + r * SEED_STRIDE mod 2**32, counter]`` where ``[s, counter]`` is what a single device holds, so
replica 0 draws what one device would draw for a batch of B/R, and the others draw different noise
(``prepare()`` sets this up; checkpoints keep replica 0's, i.e. the single-device state).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from dataclasses import dataclass, field
from typing import Any, Iterator

import keras

KINDS = ("none", "jax-data-parallel", "tf-mirrored", "tf-multi-worker", "torch-ddp")
# Seconds configure() waits for the coordinator / the other processes.
DEFAULT_TIMEOUT = 60.0
# Replica r's seed generators start at s + r * SEED_STRIDE (mod 2**32). An odd constant (2**32 / golden
# ratio) keeps the replicas' seeds apart: torch seeds its generator with (first + counter) mod 2**32,
# so two replicas' streams would only meet after ~2.6e9 draws; TF and JAX use the pair itself.
SEED_STRIDE = 0x9E3779B9
# Bytes broadcast_text() can carry (a run directory path, a config).
TEXT_LIMIT = 4096


class DistributionError(ValueError):
    """A distribution setting that cannot work; the message is one line for the user."""


@dataclass
class Distribution:
    """The data-parallel engine of this process (``configure()`` makes it).

    ``num_replicas`` counts replicas over all processes; ``local_replicas`` those of this process.
    ``engine`` is the backend's object: a ``keras.distribution.DataParallel``, a
    ``tf.distribute.Strategy``, or None (torch's engine is the process group; "none").
    """

    kind: str = "none"
    num_replicas: int = 1
    process_index: int = 0
    num_processes: int = 1
    local_replicas: int = 1
    devices: tuple[str, ...] = ()
    engine: Any = field(default=None, repr=False)

    # -- who is who -------------------------------------------------------------------
    @property
    def is_chief(self) -> bool:
        """Process 0: the only one that writes files (run directory, checkpoints, logs)."""
        return self.process_index == 0

    @property
    def is_distributed(self) -> bool:
        return self.num_replicas > 1

    @property
    def max_steps_per_execution(self) -> int | None:
        """The most training steps per compiled call the engine runs correctly (None: no limit).

        TensorFlow under tf.distribute: 1. Keras 3.15.1 runs several steps as a tf.while_loop with a
        tf.cond around each step, and the optimizer's merge_call inside that cond fails ("You must
        feed a value for placeholder tensor 'while/cond/Placeholder'", keras#19246; a plain
        Sequential model under MirroredStrategy fails the same way)."""
        return 1 if self.kind in ("tf-mirrored", "tf-multi-worker") else None

    def describe(self) -> str:
        """One line for the user: engine, replicas, processes."""
        if not self.is_distributed:
            return "one device"
        where = f" on {self.num_processes} processes" if self.num_processes > 1 else ""
        return f"{self.kind}: {self.num_replicas} replicas{where} ({', '.join(self.devices)})"

    # -- building ---------------------------------------------------------------------
    @contextlib.contextmanager
    def scope(self) -> Iterator[None]:
        """Build, compile and load the model inside this (variables are created on every replica)."""
        # keras.distribution.DataParallel.scope() / tf.distribute.Strategy.scope(); torch has nothing to enter.
        with self.engine.scope() if self.engine is not None else contextlib.nullcontext():
            yield

    def prepare(self, model: keras.Model) -> None:
        """Make the replicas consistent after the model is built, compiled and loaded (call again after
        every ``load_weights``): torch copies process 0's variables (weights, optimizer state, seed
        states) to every process; TF and torch then give each replica its own noise stream (see the
        module docstring). Idempotent: replica 0 keeps the single-device state."""
        if not self.is_distributed:
            return
        if self.kind == "jax-data-parallel":
            _check_jax_variables(model, self.engine)
        elif self.kind == "torch-ddp":
            _torch_broadcast_variables(_all_state_variables(model))
            offset = self.process_index * SEED_STRIDE
            for state in _seed_states(model):
                _torch_fold_seed(state, offset)
        else:
            import numpy as np

            states = _seed_states(model)
            if not states:
                return
            # Copy 0 on process 0 is replica 0, which keeps the single-device state; other workers'
            # copies may already be folded (a second prepare()), so they take process 0's.
            bases = np.stack([_tf_first_copy(s) for s in states]).astype(np.int64)
            if self.num_processes > 1:
                bases = self.from_chief(bases)
            first_replica = self.process_index * self.local_replicas
            for state, base in zip(states, bases):
                _tf_fold_seed(state, base, first_replica)

    # -- data -------------------------------------------------------------------------
    def per_replica_batch_size(self, global_batch_size: int) -> int:
        """B / R; refuses a global batch the replicas cannot share equally."""
        if global_batch_size % self.num_replicas:
            raise DistributionError(
                f"--batch-size {global_batch_size} cannot be split evenly over {self.num_replicas} replicas; "
                f"the global batch must be a multiple of {self.num_replicas}")
        return global_batch_size // self.num_replicas

    def distribute_dataset(self, dataset, global_batch_size: int, num_examples: int | None = None):
        """What ``fit()`` / ``evaluate()`` get on this process, from the global pipeline.

        ``dataset`` yields global batches of ``global_batch_size`` and must produce the same batches in
        the same order on every process (same seed). ``num_examples`` (examples per pass) tells how
        many batches are full; without it a finite dataset's last batch is read once to find out.

        Under distribution only full global batches are used: the last, partial batch of a pass is
        dropped (every replica needs an equal share, and a replica without data would leave the others
        waiting in the all-reduce), and the number of batches stays known to Keras (its TF trainer,
        when it has to run into the end of a distributed dataset to find it, leaves the replicas
        inconsistent: the last, empty step still runs some of its updates on some replicas). Then:

        * JAX, one process: the global batches; Keras splits each over the local devices.
        * JAX / torch, several processes: process p gets slice p of every global batch (examples
          [p B/P, (p+1) B/P)): every process reads the whole stream and keeps its slice, so the data
          order does not depend on the number of processes.
        * TensorFlow: ``strategy.experimental_distribute_dataset`` with tf.data's DATA auto-shard
          policy: each global batch is cut into R per-replica slices of B/R and each worker keeps its
          replicas' slices (with one replica per worker, worker w gets slice w).
        """
        if not self.is_distributed:
            return dataset
        import tensorflow as tf

        self.per_replica_batch_size(global_batch_size)
        full = dataset.take(_full_batches(dataset, global_batch_size, num_examples))
        if self.kind in ("tf-mirrored", "tf-multi-worker"):
            options = tf.data.Options()
            options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
            return self.engine.experimental_distribute_dataset(full.with_options(options))
        if self.num_processes == 1:
            return full
        size = global_batch_size // self.num_processes
        begin = self.process_index * size

        def process_slice(*batch):
            sliced = tf.nest.map_structure(lambda t: t[begin : begin + size], batch)
            return sliced if len(sliced) > 1 else sliced[0]

        return full.map(process_slice)  # a map keeps the number of batches known

    # -- coordination helpers for the caller -------------------------------------------
    def from_chief(self, array):
        """Process 0's numpy ``array`` on every process (same shape and dtype everywhere)."""
        import numpy as np

        array = np.asarray(array)
        if self.num_processes == 1:
            return array
        # A sum to which only the chief contributes: one collective that every backend has.
        mine = array if self.is_chief else np.zeros_like(array)
        return _all_reduce_sum_numpy(self, mine).astype(array.dtype)

    def broadcast_text(self, text: str | None) -> str:
        """Process 0's ``text`` on every process (e.g. the run directory it created)."""
        if self.num_processes == 1:
            return text or ""
        import numpy as np

        buffer = np.zeros(TEXT_LIMIT, np.int32)
        if self.is_chief:
            data = (text or "").encode()
            if len(data) > TEXT_LIMIT:
                raise DistributionError(f"broadcast_text carries at most {TEXT_LIMIT} bytes, got {len(data)}")
            buffer[: len(data)] = np.frombuffer(data, np.uint8)
        received = self.from_chief(buffer)
        return bytes(received[received > 0].astype(np.uint8)).decode()

    def barrier(self) -> None:
        """Wait until every process gets here."""
        if self.num_processes > 1:
            import numpy as np

            _all_reduce_sum_numpy(self, np.ones(1, np.int32))

    def shutdown(self) -> None:
        """Leave the process group (torch); a no-op elsewhere."""
        if self.kind == "torch-ddp":
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()


def configure(
    devices: int | str | None = None,
    coordinator: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    global_batch_size: int | None = None,
) -> Distribution:
    """The engine for the active Keras backend. Call before any data, model or tensor is created.

    ``devices``: this process's devices: None or "all" (every local accelerator, else one CPU), a
    count N (the first N), or names "gpu:0,gpu:1". ``coordinator``: "host:port" of process 0 for a
    multi-process run (TensorFlow: all workers' "host:port", comma-separated, in process order),
    with ``num_processes`` and ``process_id``; without them, the launcher's environment decides
    (torch: torchrun's RANK/WORLD_SIZE/MASTER_ADDR/MASTER_PORT; TensorFlow: TF_CONFIG; JAX:
    KERAS_DISTRIBUTION_JOB_ADDRESSES/_NUM_PROCESSES/_PROCESS_ID). ``timeout``: seconds to wait for
    the coordinator and the other processes. ``global_batch_size``: checked at once (the replicas
    must share it equally). Raises DistributionError (a ValueError) with a one-line message for
    settings that cannot work.
    """
    if timeout <= 0:
        raise DistributionError(f"the distribution timeout must be > 0 s, got {timeout}")
    backend = keras.backend.backend()
    if backend == "jax":
        distribution = _configure_jax(devices, coordinator, num_processes, process_id, timeout)
    elif backend == "tensorflow":
        distribution = _configure_tf(devices, coordinator, num_processes, process_id, timeout)
    elif backend == "torch":
        distribution = _configure_torch(devices, coordinator, num_processes, process_id, timeout)
    else:
        raise DistributionError(f"kgen distributes on tensorflow, jax and torch, not {backend}")
    if global_batch_size is not None:
        distribution.per_replica_batch_size(global_batch_size)
    return distribution


def virtual_cpu_devices(n: int) -> None:
    """Split the CPU into ``n`` devices (tests and benchmarks on machines without accelerators).

    Must run before the backend starts (TensorFlow: before any op; JAX: before any array). torch
    has no virtual devices: run ``n`` processes instead (torchrun --nproc_per_node n).
    """
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        try:
            jax.config.update("jax_num_cpu_devices", n)
        except RuntimeError:
            raise DistributionError("JAX has already started; split the CPU before anything else runs "
                                    "(or set JAX_NUM_CPU_DEVICES before starting)") from None
    elif backend == "tensorflow":
        import tensorflow as tf

        cpu = tf.config.list_physical_devices("CPU")[0]
        try:
            tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * n)
        except RuntimeError:
            raise DistributionError("TensorFlow has already started; split the CPU before anything "
                                    "else runs") from None
    else:
        raise DistributionError("torch has no virtual devices: run several processes "
                                "(python -m torch.distributed.run --nproc_per_node N ...)")


# -- shared helpers -------------------------------------------------------------------------

def _count(value: int | None, what: str) -> int | None:
    if value is not None and (not isinstance(value, int) or value < 1):
        raise DistributionError(f"{what} must be a positive integer, got {value!r}")
    return value


def _select(devices: int | str | None, available: list[str], kind: str) -> list[str]:
    """The requested subset of this process's ``available`` devices (names like "gpu:0")."""
    if devices is None or devices == "all":
        return available
    if isinstance(devices, str) and not devices.strip().isdigit():
        wanted = [d.strip().lower() for d in devices.split(",") if d.strip()]
        missing = [d for d in wanted if d not in available]
        if missing:
            raise DistributionError(f"no device {', '.join(missing)} on this machine; {kind} sees: "
                                    f"{', '.join(available)}")
        return wanted
    count = int(devices)
    if count < 1:
        raise DistributionError(f"--devices must be >= 1, got {count}")
    if count > len(available):
        raise DistributionError(f"--devices {count} asks for more devices than this machine has "
                                f"({len(available)}: {', '.join(available)})")
    return available[:count]


def wait_for_coordinator(address: str, timeout: float) -> None:
    """Return once something listens at ``address`` ("host:port"); DistributionError after ``timeout`` s.

    Processes other than 0 call this before joining: JAX's client aborts the whole process (not an
    exception) when the coordinator never answers, and torch/TF would block, so we look first.
    """
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise DistributionError(f"the coordinator address must be host:port, got {address!r}")
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, int(port)), timeout=max(0.1, min(2.0, deadline - time.monotonic()))):
                return
        except OSError:
            if time.monotonic() >= deadline:
                raise DistributionError(
                    f"the coordinator {address} did not answer within {timeout:g} s (start process 0 first, "
                    "check the address and the firewall, or raise the timeout)") from None
            time.sleep(0.2)


def _full_batches(dataset, global_batch_size: int, num_examples: int | None) -> int:
    """How many full global batches one pass of ``dataset`` yields (-1: it repeats forever)."""
    import tensorflow as tf

    count = int(dataset.cardinality())
    if count == tf.data.INFINITE_CARDINALITY:
        return -1  # take(-1) keeps everything; fit() runs --steps-per-epoch batches
    if num_examples is not None:
        full = num_examples // global_batch_size
        return full if count < 0 else min(full, count)
    if count == tf.data.UNKNOWN_CARDINALITY:
        raise DistributionError("cannot tell how many batches the data have; pass the number of examples")
    if count == 0:
        return 0
    static = tf.nest.flatten(dataset.element_spec)[0].shape[0]
    if static == global_batch_size:
        return count
    last = tf.nest.flatten(next(iter(dataset.skip(count - 1))))[0]
    return count if int(tf.shape(last)[0]) == global_batch_size else count - 1


def _seed_states(model: keras.Model) -> list:
    """The state variables of every ``keras.random.SeedGenerator`` the model (and its layers) own."""
    return [v for v in model.variables if v.path.endswith("seed_generator_state")]


def _all_state_variables(model: keras.Model) -> list:
    """Everything a replica holds: model variables and, once compiled, every phase optimizer's."""
    variables = list(model.variables)
    if getattr(model, "optimizer", None) is not None:
        variables += list(model.optimizer.variables)
    seen, unique = set(), []
    for v in variables:
        if id(v) not in seen:
            seen.add(id(v))
            unique.append(v)
    return unique


def _folded(first_seed: int, offset: int, dtype: str) -> int:
    """first_seed + offset mod 2**32, as a value of the seed dtype (int32 on torch: two's complement)."""
    value = (int(first_seed) + offset) & 0xFFFFFFFF
    if dtype == "int32" and value >= 2**31:
        value -= 2**32
    return value


def _all_reduce_sum_numpy(distribution: Distribution, array):
    """Sum of ``array`` over the processes (each process contributes once), as numpy."""
    import numpy as np

    if distribution.kind == "torch-ddp":
        import torch
        import torch.distributed as dist

        device = "cuda" if dist.get_backend() == "nccl" else "cpu"
        tensor = torch.as_tensor(array, device=device)
        dist.all_reduce(tensor)
        return tensor.cpu().numpy()
    if distribution.kind == "jax-data-parallel":
        from jax.experimental import multihost_utils

        gathered = multihost_utils.process_allgather(np.asarray(array))  # (processes, ...)
        return np.asarray(gathered).sum(axis=0)
    if distribution.kind == "tf-multi-worker":
        import tensorflow as tf

        strategy = distribution.engine
        local = distribution.local_replicas

        def contribution(context):
            # Only each worker's first replica adds the array, so the sum counts every process once.
            first = context.replica_id_in_sync_group % local == 0
            return tf.constant(array) * tf.cast(first, array.dtype)

        per_replica = strategy.experimental_distribute_values_from_function(contribution)
        return strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None).numpy()
    return np.asarray(array)


# -- JAX ------------------------------------------------------------------------------------

def _configure_jax(devices, coordinator, num_processes, process_id, timeout) -> Distribution:
    import jax

    coordinator = coordinator or os.environ.get("KERAS_DISTRIBUTION_JOB_ADDRESSES", "").split(",")[0] or None
    num_processes = _count(num_processes or _env_int("KERAS_DISTRIBUTION_NUM_PROCESSES"), "num_processes")
    if process_id is None:
        process_id = _env_int("KERAS_DISTRIBUTION_PROCESS_ID")
    if (num_processes or 1) > 1 or coordinator:
        if not coordinator or not num_processes or process_id is None:
            raise DistributionError("a multi-process JAX run needs the coordinator address, the number of "
                                    "processes and this process's id")
        if not 0 <= process_id < num_processes:
            raise DistributionError(f"process id {process_id} is not in 0..{num_processes - 1}")
        if not jax.distributed.is_initialized():
            if process_id != 0:
                wait_for_coordinator(coordinator, timeout)
            # Cross-process collectives between CPU devices go through gloo (accelerators are unaffected).
            jax.config.update("jax_cpu_collectives_implementation", "gloo")
            jax.distributed.initialize(coordinator, num_processes, process_id,
                                       initialization_timeout=max(1, int(timeout)))
            _jax_same_seed_everywhere()
    local = jax.local_devices()
    names = [f"{d.platform}:{d.id}" for d in local]
    chosen = set(_select(devices, names, "JAX"))
    local_chosen = [d for d, n in zip(local, names) if n in chosen]
    processes = jax.process_count()
    if processes > 1:
        # Every process uses the same number of its local devices; the mesh is ordered by process so
        # that process p's devices hold slice p of the global batch (see distribute_dataset).
        count = len(local_chosen)
        mesh_devices = []
        for p in range(processes):
            mesh_devices += [d for d in jax.devices() if d.process_index == p][:count]
    else:
        mesh_devices = local_chosen
    if len(mesh_devices) == 1:
        return Distribution(devices=(names[0],))
    engine = keras.distribution.DataParallel(devices=mesh_devices, auto_shard_dataset=False)
    # Keras's JAX trainer looks the distribution up when fit()/evaluate() run, not only while the
    # model is built, so it is set for the whole process.
    keras.distribution.set_distribution(engine)
    return Distribution("jax-data-parallel", len(mesh_devices), jax.process_index(), processes, len(local_chosen),
                        tuple(f"{d.platform}:{d.id}" for d in local_chosen), engine)


def _jax_same_seed_everywhere() -> None:
    """Processes must build identical initial weights: Keras's multi-host initialize agrees on one
    seed when none was set (keras.distribution.initialize does the same after jax.distributed)."""
    from keras.src.backend.jax import distribution_lib as keras_jax_distribution

    keras_jax_distribution.initialize_rng()


def _check_jax_variables(model: keras.Model, engine) -> None:
    """Variables made outside distribution.scope() live on one device: the jitted step would fail
    with 'incompatible devices' (keras PR#22256); say what to do instead."""
    import jax

    mesh = engine.device_mesh.backend_mesh
    for v in model.variables:
        sharding = getattr(v.value, "sharding", None)
        if not isinstance(sharding, jax.sharding.NamedSharding) or sharding.mesh != mesh:
            raise DistributionError(f"variable {v.path} was created outside distribution.scope(): build, "
                                    "compile and load the model inside it")


def _env_int(name: str) -> int | None:
    value = os.environ.get(name)
    return int(value) if value not in (None, "") else None


# -- TensorFlow -----------------------------------------------------------------------------

def _configure_tf(devices, coordinator, num_processes, process_id, timeout) -> Distribution:
    _count(num_processes, "num_processes")
    if coordinator:
        addresses = [a.strip() for a in coordinator.split(",") if a.strip()]
        num_processes = num_processes or len(addresses)
        if len(addresses) != num_processes:
            raise DistributionError("TensorFlow needs every worker's host:port, comma-separated in process order "
                                    f"({num_processes} processes, {len(addresses)} addresses given)")
        if process_id is None or not 0 <= process_id < num_processes:
            raise DistributionError(f"process id {process_id} is not in 0..{num_processes - 1}")
        previous = os.environ.get("TF_CONFIG")
        os.environ["TF_CONFIG"] = json.dumps({"cluster": {"worker": addresses},
                                              "task": {"type": "worker", "index": process_id}})
        try:
            return _configure_tf_from_environment(devices, num_processes, timeout)
        except BaseException:
            # a refused or failed start leaves the process's environment as it was (a later
            # single-process run in the same process must not find this cluster in TF_CONFIG)
            if previous is None:
                os.environ.pop("TF_CONFIG", None)
            else:
                os.environ["TF_CONFIG"] = previous
            raise
    return _configure_tf_from_environment(devices, num_processes, timeout)


def _configure_tf_from_environment(devices, num_processes, timeout) -> Distribution:
    import tensorflow as tf

    workers, index = _tf_config_workers()
    if num_processes not in (None, len(workers) or 1):
        raise DistributionError(f"{num_processes} processes requested but TF_CONFIG lists {len(workers)} workers")
    if len(workers) > 1:
        if devices not in (None, "all"):
            raise DistributionError("MultiWorkerMirroredStrategy uses every local GPU (or one CPU) of each worker; "
                                    "choose GPUs with CUDA_VISIBLE_DEVICES instead of --devices")
        if index != 0:
            wait_for_coordinator(workers[0], timeout)
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
        _tf_handshake(strategy, workers, timeout)
        local = len(strategy.extended.worker_devices)
        names = tuple(d.rpartition("/device:")[2].lower() for d in strategy.extended.worker_devices)
        return Distribution("tf-multi-worker", strategy.num_replicas_in_sync, index, len(workers), local, names,
                            strategy)
    gpus = [d.name for d in tf.config.list_logical_devices("GPU")]
    available = gpus or [d.name for d in tf.config.list_logical_devices("CPU")]
    names = [n.rpartition("/device:")[2].lower() for n in available]
    chosen = _select(devices, names, "TensorFlow")
    if len(chosen) == 1:
        return Distribution(devices=tuple(chosen))
    strategy = tf.distribute.MirroredStrategy([c.upper() for c in chosen])
    return Distribution("tf-mirrored", len(chosen), 0, 1, len(chosen), tuple(chosen), strategy)


def _tf_config_workers() -> tuple[list[str], int]:
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        return [], 0
    try:
        config = json.loads(raw)
        workers = list(config.get("cluster", {}).get("worker", []))
        task = config.get("task", {})
    except (ValueError, AttributeError):
        raise DistributionError("TF_CONFIG is not valid JSON with cluster.worker and task") from None
    chief = config.get("cluster", {}).get("chief", [])
    if chief:
        raise DistributionError("kgen's TF_CONFIG has workers only (worker 0 is the chief); drop the 'chief' job")
    return workers, int(task.get("index", 0))


def _tf_handshake(strategy, workers: list[str], timeout: float) -> None:
    """One all-reduce with a deadline: fails clearly when a worker never joins."""
    import tensorflow as tf

    options = tf.distribute.experimental.CommunicationOptions(timeout_seconds=timeout)

    @tf.function
    def handshake():
        def replica():
            return tf.distribute.get_replica_context().all_reduce(
                tf.distribute.ReduceOp.SUM, tf.constant(1.0), options=options)

        return strategy.run(replica)

    try:
        total = strategy.experimental_local_results(handshake())[0]
    except (tf.errors.DeadlineExceededError, tf.errors.UnavailableError) as exc:
        raise DistributionError(f"the other TensorFlow workers ({', '.join(workers)}) did not all join within "
                                f"{timeout:g} s ({type(exc).__name__})") from None
    if int(total.numpy()) != strategy.num_replicas_in_sync:
        raise DistributionError("the TensorFlow workers disagree on the number of replicas")


def _tf_first_copy(state):
    """This process's copy 0 of a (mirrored) variable, as numpy."""
    copies = getattr(state.value, "values", None)
    return (copies[0] if copies else state.value).numpy()


def _tf_fold_seed(state, base, first_replica: int) -> None:
    """Replica i (global index first_replica + i) of a mirrored seed state: [s + index * stride, counter].

    Keras creates seed states with aggregation "none", so in a replica each copy advances on its own
    and the copies may differ; read outside a replica (saving) a mirrored variable gives copy 0.
    """
    import tensorflow as tf

    copies = getattr(state.value, "values", None) or (state.value,)
    for i, copy in enumerate(copies):
        seed = _folded(base[0], (first_replica + i) * SEED_STRIDE, "int64")
        copy.assign(tf.constant([seed, int(base[1])], copy.dtype))


# -- torch ----------------------------------------------------------------------------------

TORCH_ENV = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def _configure_torch(devices, coordinator, num_processes, process_id, timeout) -> Distribution:
    import datetime

    import torch
    import torch.distributed as dist

    _count(num_processes, "num_processes")
    world = _env_int("WORLD_SIZE") or 1
    wanted = num_processes or world
    if devices not in (None, "all", 1, "1"):
        raise DistributionError("torch runs one device per process: launch one process per device "
                                "(python -m torch.distributed.run --nproc_per_node N ...)")
    cuda = torch.cuda.is_available()
    local_rank = _env_int("LOCAL_RANK") or 0
    if wanted == 1 and world == 1:
        return Distribution(devices=(f"cuda:{local_rank}" if cuda else "cpu",))
    missing = [name for name in TORCH_ENV if not os.environ.get(name)]
    if missing:
        raise DistributionError(f"a multi-process torch run needs the launcher's environment ({', '.join(missing)} "
                                "unset): start it with python -m torch.distributed.run --nproc_per_node N (or torchrun)")
    rank = int(os.environ["RANK"])
    address = f"{os.environ['MASTER_ADDR']}:{os.environ['MASTER_PORT']}"
    if num_processes is not None and num_processes != world:
        raise DistributionError(f"{num_processes} processes requested but the launcher started WORLD_SIZE={world}")
    if process_id is not None and process_id != rank:
        raise DistributionError(f"process id {process_id} requested but the launcher gave RANK={rank}")
    if coordinator and coordinator != address:
        raise DistributionError(f"coordinator {coordinator} requested but the launcher set {address}")
    if not dist.is_initialized():
        if rank != 0:
            wait_for_coordinator(address, timeout)
        if cuda:
            torch.cuda.set_device(local_rank)  # Keras's "cuda" device is the current one
        try:
            dist.init_process_group("nccl" if cuda else "gloo", init_method="env://",
                                    timeout=datetime.timedelta(seconds=timeout))
        except (RuntimeError, TimeoutError) as exc:
            raise DistributionError(f"torch.distributed could not join the {world} processes at {address} within "
                                    f"{timeout:g} s ({type(exc).__name__})") from None
    device = f"cuda:{local_rank}" if cuda else "cpu"
    return Distribution("torch-ddp", world, rank, world, 1, (device,), None)


def _torch_broadcast_variables(variables: list) -> None:
    """Process 0's values of ``variables`` everywhere: one broadcast per dtype (a flat buffer)."""
    import torch
    import torch.distributed as dist

    by_dtype: dict = {}
    for v in variables:
        by_dtype.setdefault(v.value.dtype, []).append(v)
    for group in by_dtype.values():
        with torch.no_grad():
            flat = torch.cat([v.value.reshape(-1) for v in group])
            dist.broadcast(flat, src=0)
            start = 0
            for v in group:
                size = v.value.numel()
                v.assign(flat[start : start + size].reshape(v.value.shape))
                start += size


def _torch_fold_seed(state, offset: int) -> None:
    import torch

    base = state.value.detach().cpu().tolist()
    seed = _folded(base[0], offset, "int32")
    with torch.no_grad():
        state.assign(torch.tensor([seed, base[1]], dtype=state.value.dtype))
