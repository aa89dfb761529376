"""Helpers shared by the families' remedy entries: seeding, parameter checks, module swaps."""

from __future__ import annotations

import contextlib
import math
import numbers
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from graddoctor.problem import Problem
from graddoctor.remedies._tree import replace_module_


@contextlib.contextmanager
def seeded_rng(seed: int | None, model: nn.Module) -> Iterator[None]:
    """Run the block with the CPU generator (and the model's CUDA generators) seeded by ``seed``.

    The global random state is restored afterwards, so applying a remedy never shifts the
    caller's random stream. ``seed=None`` draws from the global stream as it is.
    """
    if seed is None:
        yield
        return
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise ValueError(f"seed must be an int (or None for the global random state), got {seed!r}")
    devices = sorted({p.device.index or 0 for p in model.parameters() if p.device.type == "cuda"})
    with torch.random.fork_rng(devices=devices):
        torch.random.default_generator.manual_seed(int(seed))
        for index in devices:
            torch.cuda.default_generators[index].manual_seed(int(seed))
        yield


def positive(name: str, value: Any) -> float:
    """``value`` as a float, or ``ValueError`` unless it is a finite number > 0."""
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or not (math.isfinite(value) and value > 0)
    ):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def reference_parameter(model: nn.Module) -> torch.Tensor | None:
    """The first floating-point parameter (for dtype and device), or None."""
    return next((p for p in model.parameters() if p.is_floating_point()), None)


def trainable_reason(problem: Problem) -> str | None:
    """Why a gradient-based remedy cannot act on ``problem`` (no trainable weights, closed form)."""
    if getattr(problem.step_fn, "closed_form", False):
        name = getattr(problem.step_fn, "__name__", type(problem.step_fn).__name__)
        return (
            f"the step function {name} fits the model in closed form: there is no gradient step "
            "to clip or slow down"
        )
    if not any(p.requires_grad for p in problem.model.parameters()):
        return "the model has no trainable parameters (requires_grad=True): there is no gradient to act on"
    return None


def first_inputs(problem: Problem) -> Any:
    """The inputs of the first batch (``ValueError`` for empty data or non-pair batches)."""
    batch = next(iter(problem.data), None)
    if batch is None:
        raise ValueError("Problem.data is empty: give at least one (inputs, targets) batch")
    if not isinstance(batch, (tuple, list)) or len(batch) != 2:
        raise ValueError("each batch must be an (inputs, targets) pair")
    return batch[0]


def put_module(problem: Problem, name: str, new: nn.Module) -> Problem:
    """``problem`` with the submodule ``name`` replaced by ``new`` (``""``: the whole model)."""
    if name == "":
        return problem.replace(model=new)
    replace_module_(problem.model, name, new)
    return problem
