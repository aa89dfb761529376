"""The clipping family's registered remedies: gradient transforms appended to a Problem.

Their code is in :mod:`graddoctor.remedies.clip._apply`.

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

from graddoctor.remedies._deferred import Deferred
from graddoctor.remedies._entries import TRAINABLE
from graddoctor.remedies._remedy import Remedy


def _code(name: str, *args: str) -> Deferred:
    return Deferred("graddoctor.remedies.clip._apply", name, *args)


REMEDIES = (
    Remedy(
        "clip_value", "Clip every gradient entry to [-value, value] (Mikolov 2012)",
        {"value": 1.0}, _code("_clip_value"), TRAINABLE,
        treats={"nonfinite": 3, "nonfinite_while_exploding": 3, "exploding_gradients_from_huge_loss": 4},
        settings={"keras": "clipvalue=1.0 on the optimizer"},
    ),
    Remedy(
        "clip_norm", "Rescale the gradients to a maximum total norm (Pascanu, Mikolov & Bengio 2013)",
        {"max_norm": 1.0, "norm_type": 2.0, "nonfinite": "skip", "per_tensor": False}, _code("_clip_norm"), TRAINABLE,
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
        {"value": 1.0}, _code("_clip_backward"), TRAINABLE,
        treats={"nonfinite_in_recurrent": 2, "exploding_gradients_in_recurrent": 5, "exploding_gradients_over_time": 2},
    ),
    Remedy(
        "clip_adaptive", "Unit-wise adaptive gradient clipping (Brock, De, Smith & Simonyan 2021, NFNets)",
        {"clip_factor": 0.01, "eps": 1e-3, "include_final": False}, _code("_clip_adaptive"), TRAINABLE,
        treats={"exploding_gradients": 3, "exploding_gradients_in_recurrent": 3},
    ),
    Remedy(
        "clip_quantile", "Clip to a percentile of past gradient norms (Seetharaman et al. 2020, AutoClip)",
        {"quantile": 0.9, "history": 1000, "nonfinite": "skip"}, _code("_clip_quantile"), TRAINABLE,
        treats={"exploding_gradients": 4, "exploding_gradients_in_recurrent": 4},
    ),
)  # fmt: skip
