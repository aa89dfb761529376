"""The initialisation family's registered remedies: re-initialise the weights of a Problem's model.

===============  ====================================================================
id               what it does, defaults
===============  ====================================================================
init_he          ``init_model_(scheme="he")``: He normal on every Linear/ConvNd (RNNs:
                 orthogonal ``W_hh``), ``distribution="auto"``, ``seed=0``
init_glorot      the same with Glorot (uniform)
init_lecun       the same with LeCun (normal)
init_orthogonal  the same with orthogonal matrices (``seed=0``)
init_lsuv        ``lsuv_`` on the first batch's inputs, ``tol=0.1, max_iter=10, seed=0``
===============  ====================================================================

He, LeCun and Glorot share their ranks where the diagnosis wants "the init matching the
activation": ``activations`` says which one that is.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from graddoctor.problem import Problem
from graddoctor.remedies._common import first_inputs, seeded_rng
from graddoctor.remedies._remedy import Remedy
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


# the situations where the diagnosis puts the init matching the activation first
_MATCHED = {
    "exploding_gradients_over_depth": 1,
    "vanishing_activations_with_rectifier_or_saturating": 1,
    "exploding_activations_with_rectifier_or_saturating": 1,
}
_SCHEME_PARAMS = {"distribution": "auto", "seed": 0}

REMEDIES = (
    Remedy(
        "init_he", "He normal initialisation for rectifiers (He et al. 2015, 'Delving Deep into Rectifiers')",
        _SCHEME_PARAMS, _init_transform("he"), _init_check,
        treats={**_MATCHED, "vanishing_gradients_with_rectifier": 1, "dead_units": 2},
        activations=("rectifier",),
        settings={"keras": 'kernel_initializer="he_normal" on the Dense/Conv layers before ReLUs'},
    ),
    Remedy(
        "init_glorot", "Glorot uniform initialisation (Glorot & Bengio 2010, 'Understanding the difficulty...')",
        _SCHEME_PARAMS, _init_transform("glorot"), _init_check,
        treats={**_MATCHED, "vanishing_gradients_with_saturating": 3, "saturated_activations": 3},
        activations=("saturating", "none"),
        settings={"keras": "kernel_initializer=\"glorot_uniform\" (Keras' default)"},
    ),
    Remedy(
        "init_lecun", "LeCun normal initialisation (LeCun et al. 1998, 'Efficient BackProp')",
        _SCHEME_PARAMS, _init_transform("lecun"), _init_check,
        treats=_MATCHED, activations=("selu",),
        settings={"keras": 'kernel_initializer="lecun_normal" with activation="selu"'},
    ),
    Remedy(
        "init_orthogonal", "Orthogonal initialisation (Saxe, McClelland & Ganguli 2014)",
        {"seed": 0}, _init_transform("orthogonal"), _init_check,
        treats={
            "nonfinite_in_recurrent": 4, "exploding_gradients_over_time": 3, "vanishing_gradients": 1,
            "vanishing_gradients_over_time": 3, "vanishing_activations": 1, "exploding_activations": 1,
        },
        settings={"keras": 'kernel_initializer="orthogonal" (recurrent_initializer="orthogonal" in RNNs)'},
    ),
    Remedy(
        "init_lsuv", "Layer-sequential unit-variance initialisation (Mishkin & Matas 2016, 'All you need is a good init')",
        {"tol": 0.1, "max_iter": 10, "seed": 0}, _lsuv, _lsuv_check,
        treats={
            "exploding_gradients_over_depth": 3, "vanishing_gradients": 2, "vanishing_gradients_with_saturating": 4,
            "vanishing_gradients_with_rectifier": 3, "vanishing_activations": 2,
            "vanishing_activations_with_rectifier_or_saturating": 3, "exploding_activations": 3,
            "exploding_activations_with_rectifier_or_saturating": 3,
        },
    ),
)  # fmt: skip
