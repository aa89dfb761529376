r"""The learning-rate range test: find a learning rate at which the model trains and does not diverge.

Smith (2017), "Cyclical Learning Rates for Training Neural Networks". Exploding gradients
are often a learning rate beyond :math:`2 / L` for the largest curvature :math:`L`; the
range test finds where the loss starts to blow up, on a copy of the model.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from graddoctor.problem import Problem, train_step

__all__ = ["LRRangeTest", "suggest_lr"]


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
