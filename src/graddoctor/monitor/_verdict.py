r"""A training step's verdict: is it finite, how large is its gradient, what loss did it log.

One small vector on the device per step,

.. math:: v = \big(\mathbb{1}[\|g\|^2 \notin \mathbb{R}],\ \|g\|^2,\
    \mathbb{1}[\text{a loss} \notin \mathbb{R}],\ \textstyle\sum \text{losses},\ n_\text{losses}\big),

from one fused norm of the gradients (``_foreach.norms``): a NaN or Inf entry makes the
squared norm non-finite, so no separate scan is needed. Under ``torch.distributed`` the
vector goes through one all-reduce (SUM) so that every rank reads the same verdict, then
to the host in one transfer. Which parameters hold the NaN/Inf is counted only on a
step that is not finite (``nonfinite_parameters``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.distributed as dist

from .._foreach import nonfinite_counts, norms


def optimizer_grads(
    optimizer: torch.optim.Optimizer,
) -> tuple[list[torch.nn.Parameter], list[torch.Tensor]]:
    """The optimizer's parameters that have a gradient, and their gradients (a shard's local tensor)."""
    params, grads = [], []
    for group in optimizer.param_groups:
        for p in group["params"]:
            if p.grad is not None:
                params.append(p)
                grads.append(p.grad.to_local() if hasattr(p.grad, "to_local") else p.grad)
    return params, grads


def squared_norm(grads: list[torch.Tensor], grad_scale: torch.Tensor | None = None) -> torch.Tensor:
    r""":math:`\|g\|^2` of all gradients together, float64 on their device (NaN/Inf when an entry is).

    Args:
        grads: the gradients.
        grad_scale: the loss scale of still-scaled gradients (a fused optimizer under GradScaler).
    """
    if not grads:
        return torch.zeros((), dtype=torch.float64)
    total = norms(grads).to(torch.float64).square().sum()
    if grad_scale is not None:
        total = total / grad_scale.to(total.device, torch.float64).square()
    return total


@dataclass
class Verdict:
    """A step's verdict on the host: the gradient norm and the mean of the losses logged since the last."""

    grads_finite: bool
    grad_norm: float
    loss_finite: bool
    loss: float | None  # None: no loss logged since the last verdict


def step_verdict(
    grads: list[torch.Tensor],
    losses: list[torch.Tensor | float],
    grad_scale: torch.Tensor | None = None,
    reduce: str | None = None,
) -> Verdict:
    """The verdict of the step about to be taken (one all-reduce when distributed, one transfer).

    Args:
        grads: the step's gradients.
        losses: the losses logged since the previous verdict (tensors stay on the device).
        grad_scale: see :func:`squared_norm`.
        reduce: None (one process), ``"replicated"`` (every rank holds the same gradients:
            their squared norms are averaged) or ``"sharded"`` (summed over the shards).
    """
    square = squared_norm(grads, grad_scale)
    device = square.device
    finite = torch.isfinite(square)
    loss = torch.stack([torch.as_tensor(x, dtype=torch.float64).to(device).reshape(()) for x in losses]) \
        if losses else torch.zeros(0, dtype=torch.float64, device=device)  # fmt: skip
    loss_finite = torch.isfinite(loss)
    vector = torch.stack([
        (~finite).to(torch.float64), torch.where(finite, square, torch.zeros_like(square)),
        (~loss_finite).any().to(torch.float64), torch.where(loss_finite, loss, 0.0).sum(),
        loss_finite.sum().to(torch.float64),
    ])  # fmt: skip
    world = 1
    if reduce is not None and dist.is_available() and dist.is_initialized():
        dist.all_reduce(vector, op=dist.ReduceOp.SUM)  # the same decision on every rank
        world = dist.get_world_size()
    bad, square_sum, loss_bad, loss_sum, count = vector.tolist()
    if reduce == "replicated":
        square_sum /= world
    return Verdict(
        grads_finite=bad == 0,
        grad_norm=math.sqrt(square_sum) if bad == 0 else math.inf,
        loss_finite=loss_bad == 0,
        loss=loss_sum / count if count else None,
    )


def nonfinite_parameters(names: list[str], grads: list[torch.Tensor]) -> dict[str, int]:
    """Each gradient with NaN/Inf entries, by its parameter's name, with their count.

    One transfer: called on a step that is not finite only.
    """
    counts = nonfinite_counts(grads).tolist() if grads else []
    return {n: int(c) for n, c in zip(names, counts, strict=True) if c > 0}


__all__ = ["Verdict", "nonfinite_parameters", "optimizer_grads", "squared_norm", "step_verdict"]
