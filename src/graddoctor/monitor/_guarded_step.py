"""The Guard's hold on ``optimizer.step``: an instance attribute that judges first, removed on close.

A step pre-hook cannot cancel a step, so the Guard replaces the optimizer's ``step`` with
a function that asks it first and calls the original (the bound, hook-running ``step``, or
an earlier instance attribute) only for a step it lets through. ``remove()`` puts back
exactly what was there.
"""

from __future__ import annotations

from typing import Any

import torch

from ._optimizers import step_closure


class GuardedStep:
    """The handle of a guarded optimizer: ``remove()`` gives ``optimizer.step`` back."""

    def __init__(self, guard: Any, optimizer: torch.optim.Optimizer) -> None:
        self.guard, self.optimizer = guard, optimizer
        self._had_attribute = "step" in vars(optimizer)
        original = optimizer.step  # the bound (hook-running) step, or a wrapper's own

        def guarded_step(*args: Any, **kwargs: Any) -> Any:
            return guard._step(original, *args, **kwargs)

        self._saved = vars(optimizer).get("step")
        optimizer.step = guarded_step

    def remove(self) -> None:
        self.guard._monitor = None  # the Guard may protect the next run (a second fit)
        if self._had_attribute:
            self.optimizer.step = self._saved
        else:
            vars(self.optimizer).pop("step", None)
        if self.guard._snapshots is not None:
            self.guard._snapshots.clear()


def closure_run_once(
    optimizer: torch.optim.Optimizer, args: tuple, kwargs: dict[str, Any]
) -> tuple[Any, tuple, dict[str, Any]]:
    """Run a step's closure now, so its gradients exist before the verdict.

    Returns ``(loss, args, kwargs)`` for the real step: the closure replaced by one whose
    first evaluation returns this loss (LBFGS's later evaluations are real). Without a
    closure: ``(None, args, kwargs)`` unchanged.
    """
    closure = step_closure((optimizer, *args), kwargs)
    if closure is None:
        return None, args, kwargs
    with torch.enable_grad():
        loss = closure()
    evaluated = [False]

    def replayed() -> Any:
        if evaluated[0]:
            return closure()
        evaluated[0] = True
        return loss

    others = {k: v for k, v in kwargs.items() if k != "closure"}
    return loss, (), {**others, "closure": replayed}


__all__ = ["GuardedStep", "closure_run_once"]
