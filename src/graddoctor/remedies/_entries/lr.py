"""The learning-rate family's registered remedies: a lower rate, a warmup.

Their code is in :mod:`graddoctor.remedies.lr`.
"""

from __future__ import annotations

from graddoctor.remedies._deferred import Deferred
from graddoctor.remedies._entries import TRAINABLE
from graddoctor.remedies._remedy import Remedy


def _code(name: str, *args: str) -> Deferred:
    return Deferred("graddoctor.remedies.lr", name, *args)


# lower_lr: the optimizer factory's lrs times factor=0.1; warmup: linear from 1% over 20 steps
REMEDIES = (
    Remedy(
        "lower_lr", "Scale the learning rate down: gradient descent diverges beyond 2/L (LeCun et al. 1998)",
        {"factor": 0.1}, _code("_lower_lr"), TRAINABLE,
        treats={
            "nonfinite": 1, "nonfinite_from_huge_loss": 3, "nonfinite_in_recurrent": 3, "nonfinite_while_exploding": 2,
            "exploding_gradients": 2, "exploding_gradients_in_recurrent": 2, "exploding_gradients_from_huge_loss": 3,
            "exploding_activations": 4, "exploding_activations_with_rectifier_or_saturating": 4,
            "amp_scale_collapse": 1, "amp_scale_collapse_from_huge_loss": 2, "dead_units": 3,
            "diverging_loss": 1, "exploding_gradients_under_clipping": 1,
        },
    ),
    Remedy(
        "warmup", "Linear learning-rate warmup over the first steps (Goyal et al. 2017)",
        {"steps": 20, "start_factor": 0.01}, _code("_warmup"), TRAINABLE,
        treats={"diverging_loss": 2, "exploding_gradients_under_clipping": 2},
    ),
)  # fmt: skip
