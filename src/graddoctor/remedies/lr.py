r"""Learning-rate remedies: a lower learning rate, a warmup, and a guard that skips non-finite steps.

Exploding gradients and a diverging loss are often a learning rate too large for the
curvature: for gradient descent on a quadratic with largest Hessian eigenvalue :math:`L`,
the iterates diverge as soon as :math:`\eta > 2 / L` (LeCun et al. 1998, "Efficient
BackProp"). The ``lower_lr`` remedy scales every param group's lr down (:func:`scale_lr_`);
``warmup`` ramps it up linearly over the first steps, while a fresh network changes
fastest (:func:`add_warmup_`; Goyal et al. 2017); :class:`StepGuard` stops one bad step
from destroying the weights and backs the learning rate off. To find a stable learning
rate, see :func:`graddoctor.remedies.lr_range.suggest_lr` (re-exported here).
"""

from __future__ import annotations

import weakref
from typing import Any

import torch
from torch import nn

from graddoctor.monitor._verdict import nonfinite_parameters, optimizer_grads, step_verdict
from graddoctor.problem import Problem, backward_and_step, compute_loss, default_optimizer
from graddoctor.remedies._common import positive
from graddoctor.remedies.lr_range import LRRangeTest, suggest_lr

__all__ = [
    "LRRangeTest",
    "StepGuard",
    "add_warmup_",
    "guard_steps",
    "linear_warmup_factor",
    "scale_lr_",
    "suggest_lr",
    "with_lr_scaled",
]


def scale_lr_(optimizer: torch.optim.Optimizer, factor: float, min_lr: float = 0.0) -> None:
    r"""Multiply the lr of every param group by ``factor``, never below ``min_lr``, in place.

    .. math:: \eta \leftarrow \max(\eta \cdot \mathrm{factor},\ \eta_{\min})

    An lr already at or below ``min_lr`` is left as it is; a tensor lr is filled in place.
    """
    for group in optimizer.param_groups:
        lr = group["lr"]
        current = float(lr)
        if current <= min_lr:  # never raise an lr that is already below the floor
            continue
        new = max(current * factor, min_lr)
        if isinstance(lr, torch.Tensor):
            lr.fill_(new)
        else:
            group["lr"] = new


def linear_warmup_factor(step: int, steps: int, start_factor: float) -> float:
    r"""The learning-rate multiplier of a linear warmup after ``step`` optimizer steps.

    .. math:: f(t) = s + (1 - s)\,\frac{\min(t, T)}{T}

    with :math:`s` = ``start_factor`` and :math:`T` = ``steps``: the "gradual warmup" of
    Goyal et al. (2017), "Accurate, Large Minibatch SGD: Training ImageNet in 1 Hour",
    sec. 2.2, as ``torch.optim.lr_scheduler.LinearLR(start_factor=s, total_iters=T)``.
    """
    return start_factor + (1.0 - start_factor) * min(step, steps) / steps


def _check_warmup_settings(steps: int, start_factor: float) -> None:
    if isinstance(steps, bool) or int(steps) != steps or steps < 1:
        raise ValueError(f"warmup steps must be an integer >= 1, got {steps}")
    if not 0.0 < start_factor <= 1.0:
        raise ValueError(f"warmup start_factor must be in (0, 1], got {start_factor}")


def add_warmup_(
    optimizer: torch.optim.Optimizer, steps: int = 20, start_factor: float = 0.01
) -> torch.optim.lr_scheduler.LinearLR:
    r"""Give ``optimizer`` a linear learning-rate warmup over its next ``steps`` steps, in place.

    Each param group's lr becomes :math:`\eta\, f(t)` (:func:`linear_warmup_factor`) for
    the step after :math:`t` steps taken: a ``LinearLR`` scheduler, stepped by a step
    post-hook after every ``optimizer.step()`` (a step GradScaler skips does not count).

    Args:
        optimizer: the optimizer; its lrs now start at ``start_factor`` times their value.
        steps: :math:`T`, the steps to reach the full lr (>= 1).
        start_factor: :math:`s`, in (0, 1].

    Returns:
        the scheduler; ``scheduler.warmup_hook.remove()`` stops the warmup where it is.
    """
    _check_warmup_settings(steps, start_factor)
    scheduler = torch.optim.lr_scheduler.LinearLR(
        optimizer, start_factor=start_factor, end_factor=1.0, total_iters=int(steps)
    )
    scheduler.warmup_hook = optimizer.register_step_post_hook(lambda *_: scheduler.step())
    return scheduler


def _check_guard_settings(factor: float, min_lr: float, patience: int) -> None:
    if not 0.0 < factor <= 1.0:
        raise ValueError(f"factor must be in (0, 1], got {factor}")
    if min_lr < 0.0:
        raise ValueError(f"min_lr must be >= 0, got {min_lr}")
    if int(patience) != patience or patience < 0:
        raise ValueError(f"patience must be a non-negative integer, got {patience}")


class StepGuard:
    r"""Skip optimizer steps whose gradients contain NaN or Inf, and lower the lr.

    Call ``guard.step()`` where you would call ``optimizer.step()``. When every gradient
    is finite it calls ``optimizer.step()`` unchanged. Otherwise it does not step (the
    parameters and the optimizer state, e.g. momentum buffers and Adam moments, stay as
    they were), counts the step in :attr:`skipped` and, once more than ``patience``
    consecutive steps were skipped, multiplies the lr of every param group by ``factor``:

    .. math:: \eta \leftarrow \max(\eta \cdot \mathrm{factor},\ \eta_{\min})

    A wrapper rather than an optimizer step pre-hook, because a pre-hook cannot cancel
    the step. The check is the verdict of :class:`graddoctor.Guard` (which also clips
    spikes and rolls back) and costs one host synchronisation per step. An lr scheduler
    that recomputes the lr from scratch at every step overrides the reduction. Under
    AMP, ``torch.amp.GradScaler`` already skips steps with non-finite unscaled
    gradients; use this guard for full-precision training.

    Args:
        optimizer: the optimizer to guard.
        factor: lr multiplier after a skipped step, in (0, 1].
        min_lr: the lr is never lowered below this (an lr already below it is kept).
        patience: number of consecutive skipped steps tolerated before the lr is lowered
            (0: lower it at every skipped step).
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        factor: float = 0.5,
        min_lr: float = 0.0,
        patience: int = 0,
    ) -> None:
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(
                f"StepGuard needs a torch.optim.Optimizer, got {type(optimizer).__name__}"
            )
        _check_guard_settings(factor, min_lr, patience)
        self.optimizer = optimizer
        self.factor = float(factor)
        self.min_lr = float(min_lr)
        self.patience = int(patience)
        self.skipped = 0
        self.consecutive = 0

    def gradients_finite(self) -> bool:
        """Whether every gradient of the optimizer's parameters is finite (one sync).

        The verdict of :class:`graddoctor.Guard` (one fused norm); only when that norm is not
        finite are the entries counted, so finite gradients whose norm overflows still step.
        """
        _, grads = optimizer_grads(self.optimizer)
        if not grads or step_verdict(grads, []).grads_finite:
            return True
        return not nonfinite_parameters([str(i) for i in range(len(grads))], grads)

    def step(self) -> bool:
        """Step the optimizer if the gradients are finite.

        Returns:
            True if the optimizer stepped, False if the step was skipped.
        """
        if self.gradients_finite():
            self.optimizer.step()
            self.consecutive = 0
            return True
        self.skipped += 1
        self.consecutive += 1
        if self.consecutive > self.patience:
            scale_lr_(self.optimizer, self.factor, self.min_lr)
        return False

    def state_dict(self) -> dict[str, int]:
        """The counters (the optimizer has its own state_dict)."""
        return {"skipped": self.skipped, "consecutive": self.consecutive}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Restore the counters saved by :meth:`state_dict`."""
        missing = {"skipped", "consecutive"} - set(state)
        if missing:
            raise ValueError(
                f"StepGuard state is missing {sorted(missing)}: pass guard.state_dict()"
            )
        self.skipped = int(state["skipped"])
        self.consecutive = int(state["consecutive"])


def guard_steps(
    problem: Problem, factor: float = 0.5, min_lr: float = 0.0, patience: int = 0
) -> Problem:
    """A copy of ``problem`` whose training step goes through a :class:`StepGuard`.

    The step is the usual one (zero_grad, loss with penalties, backward, grad
    transforms) with ``guard.step()`` in place of ``optimizer.step()``. One guard is
    kept per optimizer, in ``new_problem.step_fn.guards`` (optimizer -> StepGuard), so
    its ``skipped`` count can be read. The original problem is unchanged; the new one
    has a deep-copied model.
    """
    if problem.step_fn is not None:
        raise ValueError(
            "this problem already has a custom step_fn; call StepGuard(optimizer).step() "
            "inside it instead of optimizer.step()"
        )
    _check_guard_settings(factor, min_lr, patience)
    guards: weakref.WeakKeyDictionary[torch.optim.Optimizer, StepGuard] = (
        weakref.WeakKeyDictionary()
    )

    def guarded_step(
        problem: Problem, model: nn.Module, optimizer: torch.optim.Optimizer, batch: Any
    ) -> torch.Tensor:
        guard = guards.get(optimizer)
        if guard is None:
            guard = guards[optimizer] = StepGuard(optimizer, factor, min_lr, patience)
        optimizer.zero_grad(set_to_none=True)
        loss = compute_loss(problem, model, batch)
        backward_and_step(problem, model, optimizer, loss, step=guard.step)
        return loss

    guarded_step.guards = guards  # type: ignore[attr-defined]
    return problem.copy().replace(step_fn=guarded_step)


def with_lr_scaled(problem: Problem, factor: float) -> Problem:
    """``problem`` with an optimizer factory whose lrs are ``factor`` times the original's.

    Args:
        problem: the problem (not changed).
        factor: the multiplier, in (0, 1].

    Returns:
        a new Problem sharing the model, data and callables.
    """
    factor = positive("factor", factor)
    if factor > 1:
        raise ValueError(
            f"lower_lr factor must be in (0, 1] (0.1 = ten times smaller), got {factor}"
        )
    base = problem.optimizer or default_optimizer

    def lowered_optimizer(parameters: Any) -> torch.optim.Optimizer:
        optimizer = base(parameters)
        for group in optimizer.param_groups:  # a tensor lr may be shared with the caller
            if isinstance(group["lr"], torch.Tensor):
                group["lr"] = group["lr"].clone()
        scale_lr_(optimizer, factor)
        return optimizer

    return problem.replace(optimizer=lowered_optimizer)


def _lower_lr(problem: Problem, params: dict[str, Any]) -> Problem:
    return with_lr_scaled(problem, params["factor"])


def _warmup(problem: Problem, params: dict[str, Any]) -> Problem:
    base = problem.optimizer or default_optimizer

    def warmed_optimizer(parameters: Any) -> torch.optim.Optimizer:
        optimizer = base(parameters)
        add_warmup_(optimizer, params["steps"], params["start_factor"])
        return optimizer

    _check_warmup_settings(params["steps"], params["start_factor"])
    return problem.replace(optimizer=warmed_optimizer)
