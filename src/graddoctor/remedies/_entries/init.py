"""The initialisation family's registered remedies: re-initialise the weights of a Problem's model.

Their code is in :mod:`graddoctor.remedies.init._apply`.

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

from graddoctor.remedies._deferred import Deferred
from graddoctor.remedies._remedy import Remedy


def _code(name: str, *args: str) -> Deferred:
    return Deferred("graddoctor.remedies.init._apply", name, *args)


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
        _SCHEME_PARAMS, _code("_init_transform", "he"), _code("_init_check"),
        treats={**_MATCHED, "vanishing_gradients_with_rectifier": 1, "dead_units": 2},
        activations=("rectifier",),
        settings={"keras": 'kernel_initializer="he_normal" on the Dense/Conv layers before ReLUs'},
    ),
    Remedy(
        "init_glorot", "Glorot uniform initialisation (Glorot & Bengio 2010, 'Understanding the difficulty...')",
        _SCHEME_PARAMS, _code("_init_transform", "glorot"), _code("_init_check"),
        treats={**_MATCHED, "vanishing_gradients_with_saturating": 3, "saturated_activations": 3},
        activations=("saturating", "none"),
        settings={"keras": "kernel_initializer=\"glorot_uniform\" (Keras' default)"},
    ),
    Remedy(
        "init_lecun", "LeCun normal initialisation (LeCun et al. 1998, 'Efficient BackProp')",
        _SCHEME_PARAMS, _code("_init_transform", "lecun"), _code("_init_check"),
        treats=_MATCHED, activations=("selu",),
        settings={"keras": 'kernel_initializer="lecun_normal" with activation="selu"'},
    ),
    Remedy(
        "init_orthogonal", "Orthogonal initialisation (Saxe, McClelland & Ganguli 2014)",
        {"seed": 0}, _code("_init_transform", "orthogonal"), _code("_init_check"),
        treats={
            "nonfinite_in_recurrent": 4, "exploding_gradients_over_time": 3, "vanishing_gradients": 1,
            "vanishing_gradients_over_time": 3, "vanishing_activations": 1, "exploding_activations": 1,
        },
        settings={"keras": 'kernel_initializer="orthogonal" (recurrent_initializer="orthogonal" in RNNs)'},
    ),
    Remedy(
        "init_lsuv", "Layer-sequential unit-variance initialisation (Mishkin & Matas 2016, 'All you need is a good init')",
        {"tol": 0.1, "max_iter": 10, "seed": 0}, _code("_lsuv"), _code("_lsuv_check"),
        treats={
            "exploding_gradients_over_depth": 3, "vanishing_gradients": 2, "vanishing_gradients_with_saturating": 4,
            "vanishing_gradients_with_rectifier": 3, "vanishing_activations": 2,
            "vanishing_activations_with_rectifier_or_saturating": 3, "exploding_activations": 3,
            "exploding_activations_with_rectifier_or_saturating": 3,
        },
    ),
)  # fmt: skip
