"""Following an optimizer's step: wrapped optimizers, and closures evaluated inside the step.

* **Wrappers** that hold the real optimizer and forward ``step()`` to it without running
  ``Optimizer.__init__`` (accelerate's ``AcceleratedOptimizer``, Lightning's
  ``LightningOptimizer``) fire no step hooks of their own: the Monitor hooks the
  optimizer inside them.
* **Several optimizers** on one model (a GAN's generator and discriminator): a Monitor
  records the parameters its optimizer updates, in the model's order; the others are
  listed in the run's ``unmonitored_parameters``.
* **Closures** (``optimizer.step(closure)``, as LBFGS needs): the loss and gradients are
  evaluated inside the step, possibly several times (LBFGS's line search). The step's
  gradient is the one at the weights the step starts from, the closure's first call; a
  step pre-hook would see the gradients the previous step left (none at step 0). The
  Monitor wraps the closure instead and measures when its first call returns, before
  any weight changes. The same holds for the loss: ``LBFGS.step`` returns that first
  call's loss.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

_INNER = ("optimizer", "_optimizer")  # where wrappers keep the optimizer they forward to


def hooked_optimizer(optimizer: Any) -> torch.optim.Optimizer | None:
    """The optimizer whose step hooks fire: ``optimizer`` itself, or the one a wrapper holds.

    Returns:
        the optimizer to hook, or None when ``optimizer`` is neither an initialised
        ``torch.optim.Optimizer`` nor a wrapper of one.
    """
    for _ in range(8):  # wrappers nest a few levels at most
        if isinstance(optimizer, torch.optim.Optimizer) and hasattr(
            optimizer, "_optimizer_step_pre_hooks"
        ):
            return optimizer
        inner = next((getattr(optimizer, a) for a in _INNER if hasattr(optimizer, a)), None)
        if inner is None or inner is optimizer:
            return None
        optimizer = inner
    return None


def optimizer_parameters(
    names: list[str], params: list[torch.nn.Parameter], optimizer: torch.optim.Optimizer | None
) -> tuple[list[str], list[torch.nn.Parameter], list[str]]:
    """The model's trainable parameters that ``optimizer`` updates, and the names of the others.

    Args:
        names, params: the model's trainable parameters, in model order.
        optimizer: the optimizer (None: every parameter is monitored).

    Returns:
        ``(names, params, unmonitored_names)``.

    Raises:
        ValueError: the optimizer updates none of the model's trainable parameters.
    """
    if optimizer is None:
        return names, params, []
    updated = {id(p) for group in optimizer.param_groups for p in group["params"]}
    kept = [i for i, p in enumerate(params) if id(p) in updated]
    if not kept:
        raise ValueError(
            f"{type(optimizer).__name__} updates none of the model's {len(params)} trainable "
            "parameters: pass the model the optimizer was built on"
        )
    chosen = set(kept)
    others = [n for i, n in enumerate(names) if i not in chosen]
    return [names[i] for i in kept], [params[i] for i in kept], others


def step_closure(args: tuple, kwargs: dict) -> Callable[[], Any] | None:
    """The closure passed to ``optimizer.step``, or None.

    Args:
        args, kwargs: the step's arguments as a step hook sees them (``args[0]`` is the
            optimizer).
    """
    closure = kwargs.get("closure", args[1] if len(args) > 1 else None)
    return closure if callable(closure) else None


def after_first_call(args: tuple, kwargs: dict, callback: Callable[[], None]) -> tuple[tuple, dict]:
    """The step's arguments with its closure replaced by one that calls ``callback`` once,
    right after the closure's first call returns.

    A step pre-hook returns this pair to change the arguments ``step`` receives.

    Args:
        args, kwargs: the step's arguments as a step pre-hook sees them, with a closure.
        callback: what to run after the first evaluation (e.g. measure the gradients).
    """
    closure = step_closure(args, kwargs)
    if closure is None:
        raise ValueError("this optimizer step has no closure to wrap")
    called = False

    def first_call_measured() -> Any:
        nonlocal called
        result = closure()
        if not called:
            called = True
            callback()
        return result

    if "closure" in kwargs:
        return args, {**kwargs, "closure": first_call_measured}
    return (args[0], first_call_measured, *args[2:]), kwargs


__all__ = ["after_first_call", "hooked_optimizer", "optimizer_parameters", "step_closure"]
