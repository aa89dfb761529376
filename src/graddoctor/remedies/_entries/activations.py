"""The activation family's registered remedy: swap saturating activations.

Its code is in :mod:`graddoctor.remedies.activations`.
"""

from __future__ import annotations

from graddoctor.remedies._deferred import Deferred
from graddoctor.remedies._remedy import Remedy


def _code(name: str, *args: str) -> Deferred:
    return Deferred("graddoctor.remedies.activations", name, *args)


# swap_activation: swap_activations_(to="relu") + He re-init of the feeding layers, seed=0,
# then the lr lowered to the range test's suggestion when it is above it
REMEDIES = (
    Remedy(
        "swap_activation",
        "Replace saturating activations by ReLU, re-initialise (He) and check the lr with a range test "
        "(Nair & Hinton 2010; He et al. 2015; Smith 2017)",
        {"to": "relu", "seed": 0, "check_lr": True}, _code("_swap"), _code("_swap_check"),
        treats={"vanishing_gradients_with_saturating": 1, "saturated_activations": 1, "dead_units": 1},
        settings={"keras": 'activation="relu" with kernel_initializer="he_normal"'},
    ),
)  # fmt: skip
