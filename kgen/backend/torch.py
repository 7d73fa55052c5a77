"""PyTorch shell: autograd.grad of each phase's loss w.r.t. that phase's variables only."""

from __future__ import annotations

from typing import Callable

import torch

from kgen.backend.common import PhasedTrainerBase


class PhasedTrainer(PhasedTrainerBase):
    def train_step(self, data):
        for phase in self.phases:
            optimizer = self._optimizer_of(phase)
            for _ in range(phase.repeats):
                loss, metrics = phase.loss(data, True)
                # Gradients only for this phase's variables: other networks'
                # .grad are never touched, so no zero_grad bookkeeping is needed.
                grads = torch.autograd.grad(loss, [v.value for v in phase.variables], allow_unused=True)
                grads = [torch.zeros_like(v.value) if g is None else g for g, v in zip(grads, phase.variables)]
                with torch.no_grad():
                    optimizer.apply(grads, phase.variables)
                self._update_trackers({k: v.detach() for k, v in metrics.items()})
                self._track_gradient_norm(phase, [g.detach() for g in grads])
        with torch.no_grad():
            self.optimizer.iterations.assign_add(1)
        return self._tracker_results()


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
