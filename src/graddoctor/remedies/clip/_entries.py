"""The clipping family's registered remedies: gradient transforms appended to a Problem.

=============  ======================================================================
id             what it does, defaults
=============  ======================================================================
clip_value     grad transform ``clip_grad_value_(value=1.0)``
clip_norm      grad transform ``clip_grad_norm_(max_norm=1.0, norm_type=2.0,
               nonfinite="skip", per_tensor=False)``: a non-finite step is skipped,
               not applied; the total norm (Keras' ``global_clipnorm``), or with
               ``per_tensor=True`` each tensor's own (Keras' ``clipnorm``)
clip_backward  ``clip_during_backward(value=1.0)`` hooks on the new model; the handle is
               ``notes["backward_clip"]`` (``.remove()``)
clip_adaptive  grad transform ``adaptive_clip_(clip_factor=0.01, eps=1e-3)`` on every layer
               but the final weight layer (``include_final=False``, Brock et al. 2021)
clip_quantile  grad transform ``QuantileClipper(quantile=0.9, history=1000,
               nonfinite="skip")``, one per applied problem (``notes["quantile_clipper"]``)
=============  ======================================================================
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from graddoctor.problem import Problem
from graddoctor.remedies._common import positive, trainable_reason
from graddoctor.remedies._remedy import BACKWARD_CLIP_NOTE, Remedy
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


REMEDIES = (
    Remedy(
        "clip_value", "Clip every gradient entry to [-value, value] (Mikolov 2012)",
        {"value": 1.0}, _clip_value, trainable_reason,
        treats={"nonfinite": 3, "nonfinite_while_exploding": 3, "exploding_gradients_from_huge_loss": 4},
        settings={"keras": "clipvalue=1.0 on the optimizer"},
    ),
    Remedy(
        "clip_norm", "Rescale the gradients to a maximum total norm (Pascanu, Mikolov & Bengio 2013)",
        {"max_norm": 1.0, "norm_type": 2.0, "nonfinite": "skip", "per_tensor": False}, _clip_norm, trainable_reason,
        treats={
            "nonfinite": 2, "nonfinite_from_huge_loss": 2, "nonfinite_in_recurrent": 1,
            "nonfinite_while_exploding": 1, "exploding_gradients": 1, "exploding_gradients_in_recurrent": 1,
            "exploding_gradients_from_huge_loss": 2, "exploding_gradients_over_depth": 4,
            "exploding_gradients_over_time": 1, "amp_scale_collapse": 2, "amp_scale_collapse_from_huge_loss": 3,
            "diverging_loss": 3,
        },
        settings={"keras": "global_clipnorm=1.0 on the optimizer (clipnorm=1.0 clips each weight tensor alone)"},
    ),
    Remedy(
        "clip_backward", "Clamp gradients during backpropagation with tensor hooks (Mikolov 2012)",
        {"value": 1.0}, _clip_backward, trainable_reason,
        treats={"nonfinite_in_recurrent": 2, "exploding_gradients_in_recurrent": 5, "exploding_gradients_over_time": 2},
    ),
    Remedy(
        "clip_adaptive", "Unit-wise adaptive gradient clipping (Brock, De, Smith & Simonyan 2021, NFNets)",
        {"clip_factor": 0.01, "eps": 1e-3, "include_final": False}, _clip_adaptive, trainable_reason,
        treats={"exploding_gradients": 3, "exploding_gradients_in_recurrent": 3},
    ),
    Remedy(
        "clip_quantile", "Clip to a percentile of past gradient norms (Seetharaman et al. 2020, AutoClip)",
        {"quantile": 0.9, "history": 1000, "nonfinite": "skip"}, _clip_quantile, trainable_reason,
        treats={"exploding_gradients": 4, "exploding_gradients_in_recurrent": 4},
    ),
)  # fmt: skip
