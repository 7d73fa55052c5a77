"""Data-parallel scaling: step time per device count, and the share of it the all-reduce takes.

For each device count N (default 1, 2, 4) one fresh run trains kgen's dense autoencoder (784 -> 512 ->
32 -> 512 -> 784, one phase, ~0.8 M parameters) through ``model.fit`` at a fixed GLOBAL batch on N
replicas of ``kgen.backend.distribution`` and reports the median step time after a warm-up. The
all-reduce share is measured separately on the same N devices and engine: one mean-all-reduce of a
float32 buffer as large as the phase's gradients (what the shells reduce once per phase per step),
timed alone, divided by the step time.

On a machine without accelerators the N devices are the CPU split into N (JAX: jax_num_cpu_devices;
TensorFlow: logical CPU devices; torch: N gloo processes): they share the same cores, so the table
shows the engine's overhead, not a speed-up. The same command on a multi-GPU machine uses the GPUs
(JAX/TensorFlow: the first N local GPUs; torch: N processes on NCCL, one GPU each):

    KERAS_BACKEND=jax python benchmarks/scaling.py --devices 1,2,4,8 --batch 1024 --steps 50

Usage: KERAS_BACKEND=<backend> python benchmarks/scaling.py [--devices 1,2,4] [--batch 256] [--steps 30]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WARMUP = 5


def cpu_description() -> str:
    """CPU model and the SIMD flags that matter for float32/bfloat16 matmuls."""
    model, flags = platform.processor() or "unknown", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    wanted = ("avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")
    return f"{model}; {os.cpu_count()} cores; flags: {' '.join(f for f in wanted if f in flags) or 'none of note'}"


def child(devices: int, batch: int, steps: int) -> dict:
    """One measurement in this process (torch: this rank of ``devices`` processes)."""
    sys.path.insert(0, str(ROOT))
    import keras

    from kgen.backend import distribution as kgen_distribution

    backend = keras.backend.backend()
    if devices > 1 and backend != "torch" and not _accelerators():
        kgen_distribution.virtual_cpu_devices(devices)
    distribution = kgen_distribution.configure(devices if backend != "torch" else None)
    import numpy as np
    import tensorflow as tf

    from kgen.models import AE

    keras.utils.set_random_seed(0)
    with distribution.scope():
        model = AE((28, 28, 1), latent_dim=32)
        model.compile(learning_rate=1e-3, steps_per_execution=1)
    distribution.prepare(model)
    images = (np.random.default_rng(0).random((batch * 4, 28, 28, 1)) > 0.5).astype("float32")
    data = tf.data.Dataset.from_tensor_slices((images, np.zeros(len(images), "int32"))).repeat().batch(batch)
    data = distribution.distribute_dataset(data, batch)

    class StepTimer(keras.callbacks.Callback):
        def on_train_batch_begin(self, step, logs=None):
            self.start = time.perf_counter()

        def on_train_batch_end(self, step, logs=None):
            float(logs["loss"])  # wait for the step (asynchronous backends)
            self.times.append(time.perf_counter() - self.start)

    timer = StepTimer()
    timer.times = []
    model.fit(data, epochs=1, steps_per_epoch=WARMUP, verbose=0)
    model.fit(data, epochs=1, steps_per_epoch=steps, verbose=0, callbacks=[timer])
    gradient_values = sum(int(np.prod(v.shape)) for v in model.trainable_variables)
    reduce_seconds = _all_reduce_seconds(distribution, gradient_values) if distribution.is_distributed else 0.0
    step = statistics.median(timer.times)
    distribution.shutdown()
    return {"devices": distribution.num_replicas, "kind": distribution.kind, "step_ms": 1e3 * step,
            "samples_per_s": batch / step, "all_reduce_ms": 1e3 * reduce_seconds,
            "parameters": gradient_values, "process": distribution.process_index}


def _accelerators() -> bool:
    """GPUs or TPUs on this machine? (Asked of /dev: asking JAX or TF would start them too early.)"""
    return any(Path(path).exists() for path in ("/dev/nvidia0", "/dev/accel0"))


def _all_reduce_seconds(distribution, size: int, repeats: int = 20) -> float:
    """Median seconds of one mean-all-reduce of ``size`` float32 values on the engine's replicas."""
    import numpy as np

    times = []
    if distribution.kind == "torch-ddp":
        import torch
        import torch.distributed as dist

        device = "cuda" if dist.get_backend() == "nccl" else "cpu"
        buffer = torch.ones(size, device=device)
        for _ in range(repeats + 2):
            start = time.perf_counter()
            dist.all_reduce(buffer)
            buffer /= distribution.num_replicas
            if device == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
    elif distribution.kind == "jax-data-parallel":
        import jax
        from jax.sharding import NamedSharding, PartitionSpec

        mesh = distribution.engine.device_mesh.backend_mesh
        axis = mesh.axis_names[0]
        # One row per replica (sharded over the mesh); the mean over rows is the all-reduce.
        rows = jax.device_put(np.ones((distribution.num_replicas, size), np.float32),
                              NamedSharding(mesh, PartitionSpec(axis)))
        mean = jax.jit(lambda x: x.mean(axis=0), out_shardings=NamedSharding(mesh, PartitionSpec()))
        for _ in range(repeats + 2):
            start = time.perf_counter()
            mean(rows).block_until_ready()
            times.append(time.perf_counter() - start)
    else:
        import tensorflow as tf

        strategy = distribution.engine

        @tf.function
        def reduce():
            def replica():
                context = tf.distribute.get_replica_context()
                return context.all_reduce(tf.distribute.ReduceOp.MEAN, tf.ones([size]))
            return strategy.run(replica)

        for _ in range(repeats + 2):
            start = time.perf_counter()
            result = reduce()
            strategy.experimental_local_results(result)[0].numpy()
            times.append(time.perf_counter() - start)
    return statistics.median(times[2:])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def measure(backend: str, devices: int, batch: int, steps: int, timeout: float, threads: int | None = None) -> dict:
    """Run ``child`` in fresh process(es) and return rank 0's result."""
    command = [sys.executable, __file__, "--child", str(devices), "--batch", str(batch), "--steps", str(steps)]
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(ROOT)}
    ranks = [{}]
    if backend == "torch":
        # CPU processes share the cores: each gets its share of threads unless --threads says
        # (torchrun itself sets OMP_NUM_THREADS=1 when it starts several processes).
        env["OMP_NUM_THREADS"] = str(threads or max(1, (os.cpu_count() or 1) // devices))
    if backend == "torch" and devices > 1:
        port = str(free_port())
        ranks = [{"RANK": str(r), "LOCAL_RANK": str(r), "WORLD_SIZE": str(devices), "MASTER_ADDR": "127.0.0.1",
                  "MASTER_PORT": port} for r in range(devices)]
    processes = [subprocess.Popen(command, env={**env, **extra}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True) for extra in ranks]
    try:
        outputs = [p.communicate(timeout=timeout) for p in processes]
    finally:
        for p in processes:
            if p.poll() is None:
                p.kill()
                p.wait()
    if processes[0].returncode != 0:
        raise RuntimeError(f"{backend} x{devices} failed:\n{outputs[0][1][-2000:]}")
    return json.loads(outputs[0][0].strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--devices", default="1,2,4")
    parser.add_argument("--batch", type=int, default=256, help="global batch (fixed across device counts)")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--timeout", type=float, default=900)
    parser.add_argument("--json", default=None)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch: threads per process (default: the cores divided by the processes)")
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(child(args.child, args.batch, args.steps)), flush=True)
        return
    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    print(f"# {backend}, global batch {args.batch}, median of {args.steps} steps after {WARMUP}; "
          f"{cpu_description()}")
    rows = []
    print(f"{'devices':>7} {'engine':>18} {'step ms':>9} {'samples/s':>10} {'all-reduce ms':>14} {'share':>6}")
    for count in [int(d) for d in args.devices.split(",")]:
        row = measure(backend, count, args.batch, args.steps, args.timeout, args.threads)
        rows.append(row)
        share = row["all_reduce_ms"] / row["step_ms"] if row["step_ms"] else 0.0
        print(f"{row['devices']:>7} {row['kind']:>18} {row['step_ms']:>9.2f} {row['samples_per_s']:>10.0f} "
              f"{row['all_reduce_ms']:>14.3f} {share:>6.1%}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"backend": backend, "cpu": cpu_description(), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
