"""The code of the clipping family's registered remedies (declared in ``remedies/_entries/clip.py``).

Each appends a gradient transform to a Problem, or hooks the new model.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from graddoctor.problem import Problem
from graddoctor.remedies._common import positive
from graddoctor.remedies._remedy import BACKWARD_CLIP_NOTE
from graddoctor.remedies.clip._gather import check_norm_type
from graddoctor.remedies.clip._norms import NONFINITE_POLICIES
from graddoctor.remedies.clip.adaptive import adaptive_clip_, final_layer
from graddoctor.remedies.clip.backward import clip_during_backward
from graddoctor.remedies.clip.norm import clip_grad_norm_
from graddoctor.remedies.clip.quantile import QuantileClipper
from graddoctor.remedies.clip.value import clip_grad_value_


def _append_transform(problem: Problem, transform: Any, **notes: Any) -> Problem:
    return problem.replace(
        grad_transforms=(*problem.grad_transforms, transform), notes={**problem.notes, **notes}
    )


def _clip_value(problem: Problem, params: dict[str, Any]) -> Problem:
    value = positive("value", params["value"])

    def clip_value(model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        clip_grad_value_(model.parameters(), value)

    return _append_transform(problem, clip_value)


def _clip_norm(problem: Problem, params: dict[str, Any]) -> Problem:
    max_norm = positive("max_norm", params["max_norm"])
    norm_type = check_norm_type(params["norm_type"])
    nonfinite, per_tensor = params["nonfinite"], params["per_tensor"]
    if nonfinite not in NONFINITE_POLICIES:
        raise ValueError(f"nonfinite must be one of {NONFINITE_POLICIES}, got {nonfinite!r}")
    if not isinstance(per_tensor, bool):
        raise ValueError(f"per_tensor must be True or False, got {per_tensor!r}")

    def clip_norm(model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        clip_grad_norm_(
            model.parameters(), max_norm, norm_type, nonfinite=nonfinite, per_tensor=per_tensor
        )

    return _append_transform(problem, clip_norm)


def _clip_adaptive(problem: Problem, params: dict[str, Any]) -> Problem:
    clip_factor, eps = (
        positive("clip_factor", params["clip_factor"]),
        positive("eps", params["eps"]),
    )

    include_final = params["include_final"]
    if not isinstance(include_final, bool):
        raise ValueError(f"include_final must be True or False, got {include_final!r}")

    def clip_adaptive(model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        head = None if include_final else final_layer(model)
        skipped = set() if head is None else {id(p) for p in head.parameters(recurse=False)}
        kept = [p for p in model.parameters() if id(p) not in skipped]
        adaptive_clip_(kept, clip_factor=clip_factor, eps=eps)

    return _append_transform(problem, clip_adaptive)


def _clip_quantile(problem: Problem, params: dict[str, Any]) -> Problem:
    clipper = QuantileClipper(params["quantile"], params["history"], nonfinite=params["nonfinite"])

    def clip_quantile(model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        clipper(model.parameters())

    return _append_transform(problem, clip_quantile, quantile_clipper=clipper)


def _clip_backward(problem: Problem, params: dict[str, Any]) -> Problem:
    handle = clip_during_backward(problem.model.parameters(), params["value"])
    return problem.replace(notes={**problem.notes, BACKWARD_CLIP_NOTE: handle})
