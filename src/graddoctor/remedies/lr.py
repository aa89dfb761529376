r"""Learning-rate remedies: skip non-finite steps, and find a stable learning rate.

Exploding gradients are often a learning rate too large for the curvature: for gradient
descent on a quadratic with largest Hessian eigenvalue :math:`L`, the iterates diverge
as soon as :math:`\eta > 2 / L`. :class:`StepGuard` stops one bad step from destroying
the weights and backs the learning rate off; :func:`suggest_lr` runs the learning-rate
range test of Smith (2017), "Cyclical Learning Rates for Training Neural Networks".
"""

from __future__ import annotations

import copy
import math
import weakref
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from graddoctor.problem import Problem, backward_and_step, compute_loss, train_step


def _all_finite(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """A 0-d bool tensor: every entry of every tensor is finite. No host sync."""
    by_device: dict[tuple[torch.device, torch.dtype], list[torch.Tensor]] = {}
    for tensor in tensors:
        if tensor.is_sparse:
            tensor = tensor.coalesce().values()
        if tensor.numel():
            by_device.setdefault((tensor.device, tensor.dtype), []).append(tensor)
    if not by_device:
        return torch.ones((), dtype=torch.bool)
    home = tensors[0].device
    flags = []
    for group in by_device.values():
        # an Inf entry makes the max-abs norm infinite (and, unlike the 2-norm, large
        # finite values cannot overflow it); a NaN entry makes the 1-norm, a plain sum,
        # NaN on every backend (max reductions need not propagate NaN)
        try:
            maxima = torch.stack(torch._foreach_norm(group, math.inf))
            sums = torch.stack(torch._foreach_norm(group, 1.0))
        except (RuntimeError, NotImplementedError, AttributeError):
            maxima = torch.stack([t.detach().abs().amax() for t in group])
            sums = torch.stack([t.detach().abs().sum() for t in group])
        flags.append((torch.isfinite(maxima).all() & ~torch.isnan(sums).any()).to(home))
    return torch.stack(flags).all()


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
    the step. The check is two fused reductions (max-abs for Inf, sum of abs for NaN)
    per (device, dtype) group and one host synchronisation per step. An lr scheduler
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
        """Whether every gradient of the optimizer's parameters is finite (one sync)."""
        grads = [
            p.grad
            for group in self.optimizer.param_groups
            for p in group["params"]
            if p.grad is not None
        ]
        return bool(_all_finite(grads)) if grads else True

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
            self._lower_lr()
        return False

    def _lower_lr(self) -> None:
        for group in self.optimizer.param_groups:
            lr = group["lr"]
            current = float(lr)
            if current <= self.min_lr:  # never raise an lr that is already below the floor
                continue
            new = max(current * self.factor, self.min_lr)
            if isinstance(lr, torch.Tensor):
                lr.fill_(new)
            else:
                group["lr"] = new

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


@dataclass
class LRRangeTest:
    """The result of :func:`suggest_lr`.

    Attributes:
        lrs: the learning rates tried, in order.
        losses: the bias-corrected exponentially smoothed losses at those lrs.
        raw_losses: the training losses before smoothing.
        suggested_lr: the lr at the steepest descent of the smoothed loss over log lr.
        min_loss_lr: the lr at the smallest smoothed loss.
        diverged: whether the sweep stopped early because the loss blew up.
    """

    lrs: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    raw_losses: list[float] = field(default_factory=list)
    suggested_lr: float = float("nan")
    min_loss_lr: float = float("nan")
    diverged: bool = False


def _steepest_descent_index(log_lrs: Sequence[float], losses: Sequence[float]) -> int:
    """Index of the most negative central-difference slope, searched up to the minimum."""
    stop = min(range(len(losses)), key=losses.__getitem__)
    if stop < 2:
        return stop
    best, best_slope = 0, math.inf
    for i in range(stop + 1):
        lo, hi = max(i - 1, 0), min(i + 1, stop)
        slope = (losses[hi] - losses[lo]) / (log_lrs[hi] - log_lrs[lo])
        if slope < best_slope:
            best, best_slope = i, slope
    return best


def suggest_lr(
    model: nn.Module | Problem,
    data: Iterable[Any] | None = None,
    loss_fn: Callable[[Any, Any], torch.Tensor] | None = None,
    optimizer_factory: Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer] | None = None,
    min_lr: float = 1e-7,
    max_lr: float = 10.0,
    steps: int = 100,
    smooth: float = 0.98,
    diverge_factor: float = 4.0,
) -> LRRangeTest:
    r"""Learning-rate range test (Smith, 2017) on a deep copy of the model.

    Trains a copy for up to ``steps`` steps with the lr growing exponentially from
    ``min_lr`` to ``max_lr``, smooths the losses with a bias-corrected moving average
    and stops once the smoothed loss exceeds ``diverge_factor`` times its minimum (or is
    not finite):

    .. math::
        \eta_i = \eta_{\min} \left(\frac{\eta_{\max}}{\eta_{\min}}\right)^{i/(n-1)},
        \qquad
        m_i = \beta m_{i-1} + (1 - \beta)\,\ell_i,
        \qquad
        \bar{\ell}_i = \frac{m_i}{1 - \beta^{i+1}}

    with :math:`\beta` = ``smooth`` and :math:`m_{-1} = 0`. The suggestion is the lr
    where the smoothed loss falls fastest against :math:`\log \eta` (most negative
    central difference, searched before the loss minimum): a rate at which the model
    learns quickly and that lies below the divergence point. ``min_loss_lr / 10`` is a
    common, more cautious choice. Each step is :func:`~graddoctor.problem.train_step`,
    so a Problem's penalties, gradient transforms (clipping) and step_fn take part.

    The caller's model, its gradients and the global random state are left untouched.

    Args:
        model: the network, or a :class:`~graddoctor.problem.Problem` (then ``data``,
            ``loss_fn`` and ``optimizer_factory`` default to its own).
        data: ``(inputs, targets)`` batches, cycled; a single ``(inputs, targets)`` pair
            of tensors is one batch.
        loss_fn: ``loss_fn(outputs, targets) -> scalar``.
        optimizer_factory: ``params -> Optimizer`` (its lr is overwritten at every step);
            default plain SGD.
        min_lr, max_lr: the ends of the sweep.
        steps: the number of lrs tried (at least 3).
        smooth: the moving-average factor :math:`\beta` in [0, 1).
        diverge_factor: stop when the smoothed loss exceeds this multiple of its minimum
            (for a negative minimum: exceeds it by ``(diverge_factor - 1) * |minimum|``).

    Returns:
        an :class:`LRRangeTest`.
    """
    problem = model if isinstance(model, Problem) else None
    if problem is not None:
        data = problem.data if data is None else data
        loss_fn = problem.loss_fn if loss_fn is None else loss_fn
        optimizer_factory = problem.optimizer if optimizer_factory is None else optimizer_factory
        model = problem.model
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module or a Problem, got {type(model).__name__}")
    if data is None or loss_fn is None:
        raise ValueError("suggest_lr needs data (a list of (inputs, targets) batches) and loss_fn")
    if not 0.0 < min_lr < max_lr:
        raise ValueError(f"need 0 < min_lr < max_lr, got min_lr={min_lr}, max_lr={max_lr}")
    if int(steps) != steps or steps < 3:
        raise ValueError(f"steps must be an integer >= 3, got {steps}")
    if not 0.0 <= smooth < 1.0:
        raise ValueError(f"smooth must be in [0, 1), got {smooth}")
    if diverge_factor <= 1.0:
        raise ValueError(f"diverge_factor must be > 1, got {diverge_factor}")
    if (
        isinstance(data, tuple)
        and len(data) == 2
        and all(isinstance(t, torch.Tensor) for t in data)
    ):
        data = [data]
    batches = list(data)
    if not batches:
        raise ValueError("data is empty: give at least one (inputs, targets) batch")

    trial = copy.deepcopy(model)
    trial.train()
    params = [p for p in trial.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameters")
    optimizer = (optimizer_factory or (lambda ps: torch.optim.SGD(ps, lr=min_lr)))(params)
    if problem is not None:
        step_problem = problem.replace(model=trial, loss_fn=loss_fn)
    else:
        step_problem = Problem(model=trial, data=batches, loss_fn=loss_fn)

    result = LRRangeTest()
    ratio = max_lr / min_lr
    average, best = 0.0, math.inf
    devices = sorted({p.device.index or 0 for p in params if p.device.type == "cuda"})
    with torch.random.fork_rng(devices=devices):
        for i in range(int(steps)):
            lr = min_lr * ratio ** (i / (steps - 1))
            for group in optimizer.param_groups:
                group["lr"] = lr
            # the loss of the batch before the step; the copy steps even on the last one
            value = float(train_step(step_problem, trial, optimizer, batches[i % len(batches)]))
            average = smooth * average + (1.0 - smooth) * value
            smoothed = average / (1.0 - smooth ** (i + 1))
            result.lrs.append(lr)
            result.raw_losses.append(value)
            result.losses.append(smoothed)
            # "exceeds diverge_factor x best", written to also hold for negative losses
            if not math.isfinite(smoothed) or smoothed - best > (diverge_factor - 1.0) * abs(best):
                result.diverged = True
                break
            best = min(best, smoothed)

    # the point that triggered the stop is past divergence: leave it out of the choice
    kept = list(range(len(result.losses) - (1 if result.diverged else 0)))
    if not kept:
        raise ValueError(
            f"the loss was not finite even at min_lr={min_lr}: check the model, data and "
            "loss, or lower min_lr"
        )
    log_lrs = [math.log(result.lrs[i]) for i in kept]
    losses = [result.losses[i] for i in kept]
    result.suggested_lr = result.lrs[kept[_steepest_descent_index(log_lrs, losses)]]
    result.min_loss_lr = result.lrs[kept[min(range(len(losses)), key=losses.__getitem__)]]
    return result
