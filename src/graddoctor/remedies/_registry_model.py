"""Registry transforms for feed-forward remedies: init, activations, normalisation, clipping, lr, targets.

Each ``*_check(problem) -> reason | None`` says why its remedy does not apply; each
``*_transform(problem, params) -> Problem`` acts on the working copy the protocol hands it.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn.modules.conv import _ConvNd

from graddoctor.problem import Problem, default_optimizer
from graddoctor.remedies._clip_agc import adaptive_clip_
from graddoctor.remedies._clip_autoclip import QuantileClipper
from graddoctor.remedies._clip_backward import clip_during_backward
from graddoctor.remedies._clip_norm import NONFINITE_POLICIES, clip_norm_, clip_value_
from graddoctor.remedies._init_lsuv import lsuv_
from graddoctor.remedies._init_model import init_model_
from graddoctor.remedies._modules import (
    ACTIVATION_TYPES,
    LAYER_TYPES,
    NORM_TYPES,
    SHAPE_PRESERVING_TYPES,
    leaf_modules,
    preceding_leaf,
)
from graddoctor.remedies._registry_common import first_inputs, positive, seeded_rng
from graddoctor.remedies._registry_protocol import BACKWARD_CLIP_NOTE
from graddoctor.remedies.activations import SATURATING_ACTIVATIONS, swap_activations_
from graddoctor.remedies.normalization import insert_batchnorm_
from graddoctor.remedies.targets import standardize_problem, standardize_target

_INIT_LAYERS = (nn.Linear, _ConvNd, nn.RNNBase)


# --- initialisation ---------------------------------------------------------------------


def init_check(problem: Problem) -> str | None:
    if not any(isinstance(m, _INIT_LAYERS) for m in problem.model.modules()):
        return "the model has no nn.Linear, nn.ConvNd or nn.RNN/LSTM/GRU layer to initialise"
    return None


def init_transform(scheme: str) -> Any:
    def transform(problem: Problem, params: dict[str, Any]) -> Problem:
        extra = {"distribution": params["distribution"]} if "distribution" in params else {}
        with seeded_rng(params["seed"], problem.model):
            init_model_(problem.model, scheme=scheme, **extra)
        return problem

    transform.__name__ = f"init_{scheme}"
    return transform


def lsuv_check(problem: Problem) -> str | None:
    if not any(isinstance(m, (nn.Linear, _ConvNd)) for m in problem.model.modules()):
        return "LSUV rescales nn.Linear / nn.ConvNd outputs and the model has none"
    try:
        first_inputs(problem)
    except ValueError as error:
        return f"LSUV calibrates on the first batch: {error}"
    return None


def lsuv_transform(problem: Problem, params: dict[str, Any]) -> Problem:
    with seeded_rng(params["seed"], problem.model):
        lsuv_(problem.model, first_inputs(problem), tol=params["tol"], max_iter=params["max_iter"])
    return problem


# --- activations and normalisation ------------------------------------------------------


def swap_activation_check(problem: Problem) -> str | None:
    for _, module in leaf_modules(problem.model):
        if isinstance(module, SATURATING_ACTIVATIONS) and not isinstance(module, nn.ReLU6):
            return None
    return (
        "the model has no saturating activation module (nn.Sigmoid, nn.Tanh, nn.Hardtanh, "
        "nn.Softsign...) to swap; activations called in forward (torch.tanh) must be changed in the code"
    )


def swap_activation_transform(problem: Problem, params: dict[str, Any]) -> Problem:
    with seeded_rng(params["seed"], problem.model):
        swap_activations_(problem.model, to=params["to"])
    return problem


def _fed_by_layer_without_norm(leaves: list[tuple[str, nn.Module]], index: int) -> bool:
    found = preceding_leaf(
        leaves, index, lambda m: isinstance(m, LAYER_TYPES + NORM_TYPES), lambda m: isinstance(m, SHAPE_PRESERVING_TYPES)
    )
    if found is None or isinstance(leaves[found][1], NORM_TYPES):
        return False
    for _, later in leaves[index + 1 :]:  # a norm right after the activation counts too
        if isinstance(later, NORM_TYPES):
            return False
        if not isinstance(later, SHAPE_PRESERVING_TYPES):
            break
    return True


def batchnorm_check(problem: Problem) -> str | None:
    leaves = leaf_modules(problem.model)
    candidates = [
        i for i, (name, m) in enumerate(leaves) if name and isinstance(m, ACTIVATION_TYPES)
    ]
    if not any(_fed_by_layer_without_norm(leaves, i) for i in candidates):
        return (
            "no activation module directly fed by an nn.Linear / nn.ConvNd without a normalisation "
            "layer next to it: nothing to normalise"
        )
    return None


def batchnorm_transform(problem: Problem, params: dict[str, Any]) -> Problem:
    insert_batchnorm_(problem.model, where=params["where"], kind=params["kind"])
    return problem


# --- gradient clipping ------------------------------------------------------------------


def _append_transform(problem: Problem, transform: Any, **notes: Any) -> Problem:
    return problem.replace(
        grad_transforms=(*problem.grad_transforms, transform), notes={**problem.notes, **notes}
    )


def clip_value_transform(problem: Problem, params: dict[str, Any]) -> Problem:
    value = positive("value", params["value"])

    def clip_value(model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        clip_value_(model.parameters(), value)

    return _append_transform(problem, clip_value)


def clip_norm_transform(problem: Problem, params: dict[str, Any]) -> Problem:
    max_norm = positive("max_norm", params["max_norm"])
    norm_type = float(params["norm_type"])
    if not norm_type > 0:
        raise ValueError(f"norm_type must be a positive number or float('inf'), got {params['norm_type']!r}")
    nonfinite = params["nonfinite"]
    if nonfinite not in NONFINITE_POLICIES:
        raise ValueError(f"nonfinite must be one of {NONFINITE_POLICIES}, got {nonfinite!r}")

    def clip_norm(model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        clip_norm_(model.parameters(), max_norm, norm_type=norm_type, nonfinite=nonfinite)

    return _append_transform(problem, clip_norm)


def clip_adaptive_transform(problem: Problem, params: dict[str, Any]) -> Problem:
    clip_factor, eps = positive("clip_factor", params["clip_factor"]), positive("eps", params["eps"])

    def clip_adaptive(model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        adaptive_clip_(model.parameters(), clip_factor=clip_factor, eps=eps)

    return _append_transform(problem, clip_adaptive)


def clip_quantile_transform(problem: Problem, params: dict[str, Any]) -> Problem:
    clipper = QuantileClipper(params["quantile"], params["history"], nonfinite=params["nonfinite"])

    def clip_quantile(model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        clipper(model.parameters())

    return _append_transform(problem, clip_quantile, quantile_clipper=clipper)


def clip_backward_transform(problem: Problem, params: dict[str, Any]) -> Problem:
    handle = clip_during_backward(problem.model.parameters(), params["value"])
    return problem.replace(notes={**problem.notes, BACKWARD_CLIP_NOTE: handle})


# --- learning rate and targets ----------------------------------------------------------


def lower_lr_transform(problem: Problem, params: dict[str, Any]) -> Problem:
    factor = positive("factor", params["factor"])
    if factor > 1:
        raise ValueError(f"lower_lr factor must be in (0, 1] (0.1 = ten times smaller), got {factor}")
    base = problem.optimizer or default_optimizer

    def lowered_optimizer(parameters: Any) -> torch.optim.Optimizer:
        optimizer = base(parameters)
        for group in optimizer.param_groups:
            group["lr"] = group["lr"] * factor
        return optimizer

    return problem.replace(optimizer=lowered_optimizer)


def standardize_check(problem: Problem) -> str | None:
    try:
        standardize_target(problem)
    except (TypeError, ValueError) as error:
        return str(error)
    return None


def standardize_transform(problem: Problem, params: dict[str, Any]) -> Problem:
    # standardize_problem deep-copies once more; keep the working copy's model (and its hooks)
    return standardize_problem(problem).replace(model=problem.model)
