"""The targets family's registered remedy: standardise regression targets.

Its code is in :mod:`graddoctor.remedies.targets`.
"""

from __future__ import annotations

from graddoctor.remedies._deferred import Deferred
from graddoctor.remedies._remedy import Remedy


def _code(name: str, *args: str) -> Deferred:
    return Deferred("graddoctor.remedies.targets", name, *args)


# standardize_target: standardize_problem, targets to zero mean and unit variance
REMEDIES = (
    Remedy(
        "standardize_target", "Standardise regression targets to zero mean, unit variance (LeCun et al. 1998)",
        {}, _code("_standardize"), _code("_standardize_check"),
        treats={
            "nonfinite_from_huge_loss": 1, "exploding_gradients_from_huge_loss": 1,
            "amp_scale_collapse_from_huge_loss": 1,
        },
    ),
)  # fmt: skip
