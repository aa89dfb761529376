"""The Guard's learning-rate reduction, applied around each real optimizer step.

A loop or scheduler may write the lr into ``param_groups`` at every step (nanoGPT's cosine
schedule); a reduction written there once would be undone. So the reduction is a scale kept
by the Guard and applied for the duration of the step only: ``param_groups`` show the
loop's own values between steps, and the optimizer steps with the reduced ones.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


def scaled(lr: float, scale: float, min_lr: float) -> float:
    r"""The lr a step uses: :math:`\max(\eta s, \eta_{\min})`, or :math:`\eta` when already below :math:`\eta_{\min}`."""
    return max(lr * scale, min_lr) if lr > min_lr else lr


def scaled_lrs(optimizer: torch.optim.Optimizer, scale: float, min_lr: float) -> list[float]:
    """The lr of every param group as a step would use it."""
    return [scaled(float(group["lr"]), scale, min_lr) for group in optimizer.param_groups]


@contextmanager
def lrs_scaled(optimizer: torch.optim.Optimizer, scale: float, min_lr: float) -> Iterator[None]:
    """Every param group's lr scaled inside the block, the loop's own values restored after."""
    if scale == 1.0:
        yield
        return
    saved = []
    for group in optimizer.param_groups:
        lr = group["lr"]
        saved.append(lr.clone() if isinstance(lr, torch.Tensor) else lr)
        if isinstance(lr, torch.Tensor):  # a capturable optimizer's tensor lr: kept in place
            lr.fill_(scaled(float(lr), scale, min_lr))
        else:
            group["lr"] = scaled(float(lr), scale, min_lr)
    try:
        yield
    finally:
        for group, lr in zip(optimizer.param_groups, saved, strict=True):
            if isinstance(group["lr"], torch.Tensor):
                group["lr"].copy_(lr)
            else:
                group["lr"] = lr


__all__ = ["lrs_scaled", "scaled", "scaled_lrs"]
