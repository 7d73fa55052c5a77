"""PyTorch shell: autograd.grad of each phase's loss w.r.t. that phase's variables only.

Under ``torch.distributed`` (``kgen.backend.distribution``, one process per device) every process
runs the step on its slice of the global batch; each phase then averages its gradients and the
scalars it logs over the processes with ONE all_reduce of a flat buffer (``_process_mean``) before
its optimizer applies them, so every process applies the update a single device would compute on
the whole batch. ``DistributedDataParallel`` is not used: it reduces through the wrapped module's
forward only, which kgen's phases (calling sub-networks directly) would bypass.
"""

from __future__ import annotations

import functools
from typing import Callable

import torch

from kgen.backend.common import PhasedTrainerBase
from kgen.backend.precision import loss_scale


def _world_size() -> int:
    dist = torch.distributed
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def _process_mean(tensors: list, world: int) -> list:
    """Mean over the processes of ``tensors``, as one bucketed all_reduce.

    The tensors are flattened into a single buffer (one collective per phase instead of one
    per variable), summed over the processes, divided by the world size and cut back into their
    shapes and dtypes. With equal slices of B/P examples, the mean of the per-slice mean losses'
    gradients is the gradient of the mean loss on the global batch.
    """
    # The widest dtype present, at least float32 (bfloat16/float16 gradients are summed in float32).
    dtype = functools.reduce(torch.promote_types, (t.dtype for t in tensors), torch.float32)
    flat = torch.cat([t.detach().reshape(-1).to(dtype) for t in tensors])
    torch.distributed.all_reduce(flat)
    flat /= world
    out, start = [], 0
    for t in tensors:
        size = t.numel()
        out.append(flat[start : start + size].reshape(t.shape).to(t.dtype))
        start += size
    return out


def _reduce_phase(grads: list, metrics: dict, world: int) -> tuple[list, dict]:
    names = list(metrics)
    scalars = [torch.as_tensor(metrics[n], device=grads[0].device if grads else None) for n in names]
    reduced = _process_mean(list(grads) + scalars, world)
    return reduced[: len(grads)], dict(zip(names, reduced[len(grads):]))


class PhasedTrainer(PhasedTrainerBase):
    def phase_gradients(self, phase, optimizer, data):
        """autograd.grad of the phase's loss (scaled under mixed_float16) w.r.t. its variables only
        (other networks' .grad are never touched, so no zero_grad bookkeeping is needed); the mean
        over the processes under torch.distributed."""
        loss, metrics = phase.loss(data, True)
        scale = loss_scale(optimizer)
        if scale is not None:
            loss = loss * scale.value
        grads = torch.autograd.grad(loss, [v.value for v in phase.variables], allow_unused=True)
        grads = [torch.zeros_like(v.value) if g is None else g for g, v in zip(grads, phase.variables)]
        metrics = {k: v.detach() for k, v in metrics.items()}
        world = _world_size()
        if world > 1:
            grads, metrics = _reduce_phase(grads, metrics, world)
        return [g.detach() for g in grads], metrics

    def apply_phase(self, optimizer, grads, variables):
        with torch.no_grad():
            optimizer.apply(grads, variables)

    def count_batch(self):
        with torch.no_grad():
            self.optimizer.iterations.assign_add(1)

    def test_step(self, data):
        """No gradients; across processes, every phase's logged scalars averaged in one all_reduce."""
        world = _world_size()
        if world == 1:
            return super().test_step(data)
        logged = []  # each phase's metrics, in phase order (as _evaluate_phases updates the trackers)
        for phase in self.phases:
            _, metrics = phase.loss(data, False)
            logged.append(metrics)
        values = [torch.as_tensor(v).detach() for metrics in logged for v in metrics.values()]
        if values:
            reduced = iter(_process_mean(values, world))
            for metrics in logged:
                self._update_trackers({name: next(reduced) for name in metrics})
        return self._tracker_results(training=False)


def input_gradient(fn: Callable, x):
    """d fn(x) / dx for a scalar ``fn``; differentiable again (create_graph=True)."""
    x = torch.as_tensor(x)
    if not x.requires_grad:
        x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        y = fn(x)
        (grad,) = torch.autograd.grad(y, x, create_graph=True)
    return grad


def batch_jacobian(fn, x):
    """J[b] = d fn(x)[b] / d x[b] for ``fn`` mapping a batch (B, ...) to (B, k) example by example:
    shape (B, k, ...). One forward pass, the k backward passes with unit cotangents batched
    (``is_grads_batched``); differentiable again (create_graph=True)."""
    x = torch.as_tensor(x)
    if not x.requires_grad:
        x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        y = fn(x)
        k = y.shape[-1]
        units = torch.eye(k, dtype=y.dtype, device=y.device)[:, None, :].expand(k, *y.shape)
        (rows,) = torch.autograd.grad(y, x, grad_outputs=units, is_grads_batched=True, create_graph=True)
    return rows.movedim(0, 1)
