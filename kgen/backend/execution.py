"""How a compiled training step runs on each backend when the user does not choose: XLA (jit)
or not, and how many steps one call of the step function runs (``model.compile`` keywords)."""

from __future__ import annotations

import keras

# jit_compile per backend when the user does not choose (measured: make bench).
DEFAULT_JIT = {"tensorflow": False, "jax": True, "torch": False}
# Training steps per call of the compiled step function: TensorFlow runs them as a
# loop inside one graph, JAX in one Python call without per-step callbacks; both
# save the per-step overhead of fit() that dominates small networks
# (make bench). Keras's torch trainer only runs 1.
DEFAULT_STEPS_PER_EXECUTION = {"tensorflow": 32, "jax": 32, "torch": 1}


def compile_options(jit: bool | None = None, steps_per_execution: int | None = None,
                    steps: tuple[int | None, ...] = (), most: int | None = None) -> dict:
    """``model.compile`` keywords: the user's choice, else the fastest measured for this backend.

    ``steps`` are the fixed step counts fit() will run (steps per epoch, validation steps): an
    execution must not run past them, so the default becomes the largest divisor of all of them.
    ``most``: the most steps per execution the distribution engine runs correctly.
    """
    backend = keras.backend.backend()
    if steps_per_execution is None:
        fixed = [n for n in steps if n]
        limit = min(DEFAULT_STEPS_PER_EXECUTION[backend], most or DEFAULT_STEPS_PER_EXECUTION[backend])
        steps_per_execution = max(d for d in range(1, limit + 1) if all(n % d == 0 for n in fixed))
    elif most is not None and steps_per_execution > most:
        raise ValueError(f"--steps-per-execution {steps_per_execution}: distributed training on this backend runs "
                         f"at most {most} step per execution")
    return {"jit_compile": DEFAULT_JIT[backend] if jit is None else jit, "steps_per_execution": steps_per_execution}

