"""The normalisation family's registered remedy: insert batch normalisation.

Its code is in :mod:`graddoctor.remedies.normalization`.
"""

from __future__ import annotations

from graddoctor.remedies._deferred import Deferred
from graddoctor.remedies._remedy import Remedy


def _code(name: str, *args: str) -> Deferred:
    return Deferred("graddoctor.remedies.normalization", name, *args)


# batchnorm: insert_batchnorm_(where="before", kind="batch")
REMEDIES = (
    Remedy(
        "batchnorm", "Batch normalisation before each activation (Ioffe & Szegedy 2015)",
        {"where": "before", "kind": "batch"}, _code("_batchnorm"), _code("_batchnorm_check"),
        treats={
            "exploding_gradients_over_depth": 2, "vanishing_gradients": 3, "vanishing_gradients_with_saturating": 2,
            "vanishing_gradients_with_rectifier": 2, "vanishing_activations": 3,
            "vanishing_activations_with_rectifier_or_saturating": 2, "exploding_activations": 2,
            "exploding_activations_with_rectifier_or_saturating": 2, "saturated_activations": 2, "dead_units": 4,
        },
        settings={"keras": "keras.layers.BatchNormalization() after each Dense, before its activation"},
    ),
)  # fmt: skip
