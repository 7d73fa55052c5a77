"""Mixed precision: which Keras dtype policy a run computes in, and building a model under it.

A mixed policy keeps every variable in float32 and computes the layers in 16 bits (Keras's
``mixed_bfloat16`` / ``mixed_float16``). kgen's networks end in a float32 cast (``kgen.nets``), so
everything after them -- every loss, log-density, KL, softplus, metric -- runs in float32; Keras's
BatchNormalization keeps and updates its statistics in float32. ``mixed_float16`` also needs loss
scaling (its range ends at 65504): each phase optimizer is wrapped in its own
``keras.optimizers.LossScaleOptimizer`` (``PhasedModel.compile``).

``auto`` picks what measured fastest with the same quality for the hardware at hand: bfloat16 on an
accelerator (a GPU of compute capability 8.0 or more, a TPU), float16 on an older GPU, float32 on
a CPU -- including CPUs with bfloat16 units (AMX, AVX512-BF16): on an AVX512-BF16 CPU bfloat16 measured
1.22-1.28x float32 for the conv models on TensorFlow and no faster on JAX (docs/speed.md), with the dense
models and a GAN's quality in bfloat16 not measured there, which is not yet the clear gain at equal quality a
default needs (``--precision mixed_bfloat16`` takes it; ``make bench`` measures it).
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator

import keras

MIXED = ("mixed_bfloat16", "mixed_float16")
CPU_BF16_FLAGS = ("amx_bf16", "avx512_bf16")


def cpu_flags() -> set[str]:
    """The CPU's feature flags (Linux /proc/cpuinfo; empty elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def accelerator() -> tuple[str | None, tuple[int, int] | None]:
    """("gpu" or "tpu", compute capability for a GPU) of the first accelerator the backend sees, or (None, None)."""
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        device = jax.devices()[0]
        if device.platform in ("gpu", "cuda", "rocm"):
            capability = getattr(device, "compute_capability", None)
            return "gpu", tuple(int(p) for p in str(capability).split(".")[:2]) if capability else None
        return ("tpu", None) if device.platform == "tpu" else (None, None)
    if backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        if gpus:
            return "gpu", tf.config.experimental.get_device_details(gpus[0]).get("compute_capability")
        return ("tpu", None) if tf.config.list_logical_devices("TPU") else (None, None)
    if backend == "torch":
        import torch

        if torch.cuda.is_available():
            return "gpu", tuple(torch.cuda.get_device_capability(0))
    return None, None


def resolve(precision: str) -> tuple[str, str]:
    """(the dtype policy to train in, why): ``precision`` itself unless it is ``auto``."""
    if precision != "auto":
        return precision, "--precision"
    kind, capability = accelerator()
    if kind == "tpu":
        return "mixed_bfloat16", "auto: a TPU computes in bfloat16"
    if kind == "gpu":
        if capability is None or tuple(capability) >= (8, 0):
            return "mixed_bfloat16", f"auto: a GPU with bfloat16 units (compute capability {capability})"
        return "mixed_float16", f"auto: a GPU of compute capability {capability} (float16, no bfloat16)"
    units = sorted(set(CPU_BF16_FLAGS) & cpu_flags())
    if units:
        return "float32", (f"auto: a CPU ({', '.join(units)}); mixed_bfloat16 measured 1.1-1.3x faster on "
                           "TensorFlow, up to 2x on PyTorch, not on JAX (docs/speed.md); try --precision mixed_bfloat16")
    return "float32", "auto: a CPU without bfloat16 units"


@contextlib.contextmanager
def dtype_policy(precision: str) -> Iterator[None]:
    """Layers created inside compute in ``precision`` (a Keras dtype policy name); restored after."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(precision)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def needs_loss_scaling(model: keras.Model) -> bool:
    """float16 computation underflows small gradients: its optimizers scale the loss."""
    return model.dtype_policy.name == "mixed_float16"


def loss_scale(optimizer):
    """The loss-scaling optimizer's current scale (a variable), or None for a plain optimizer."""
    return optimizer.dynamic_scale if isinstance(optimizer, keras.optimizers.LossScaleOptimizer) else None
