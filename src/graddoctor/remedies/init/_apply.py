"""The code of the initialisation family's registered remedies (declared in ``remedies/_entries/init.py``).

Each re-initialises the weights of a Problem's model.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from graddoctor.problem import Problem
from graddoctor.remedies._common import first_inputs, seeded_rng
from graddoctor.remedies.init.lsuv import lsuv_
from graddoctor.remedies.init.model import INIT_LAYER_TYPES, init_model_


def _init_check(problem: Problem) -> str | None:
    if not any(isinstance(m, (*INIT_LAYER_TYPES, nn.RNNBase)) for m in problem.model.modules()):
        return "the model has no nn.Linear, nn.ConvNd or nn.RNN/LSTM/GRU layer to initialise"
    return None


def _init_transform(scheme: str) -> Any:
    def transform(problem: Problem, params: dict[str, Any]) -> Problem:
        extra = {"distribution": params["distribution"]} if "distribution" in params else {}
        with seeded_rng(params["seed"], problem.model):
            init_model_(problem.model, scheme=scheme, **extra)
        return problem

    transform.__name__ = f"init_{scheme}"
    return transform


def _lsuv_check(problem: Problem) -> str | None:
    if not any(isinstance(m, INIT_LAYER_TYPES) for m in problem.model.modules()):
        return "LSUV rescales nn.Linear / nn.ConvNd outputs and the model has none"
    try:
        first_inputs(problem)
    except ValueError as error:
        return f"LSUV calibrates on the first batch: {error}"
    return None


def _lsuv(problem: Problem, params: dict[str, Any]) -> Problem:
    with seeded_rng(params["seed"], problem.model):
        lsuv_(problem.model, first_inputs(problem), tol=params["tol"], max_iter=params["max_iter"])
    return problem
