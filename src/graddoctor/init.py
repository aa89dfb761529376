"""``graddoctor.init``: weight initialisation schemes (see :mod:`graddoctor.remedies.init`)."""

from graddoctor.remedies.init import (
    TRUNCATED_NORMAL_STD,
    InitChoice,
    LSUVLayer,
    fan_in_and_fan_out,
    glorot_normal_,
    glorot_uniform_,
    he_normal_,
    he_uniform_,
    identity_,
    init_model_,
    lecun_normal_,
    lecun_uniform_,
    lsuv_,
    orthogonal_,
    variance_scaling_,
)

__all__ = [
    "TRUNCATED_NORMAL_STD",
    "InitChoice",
    "LSUVLayer",
    "fan_in_and_fan_out",
    "glorot_normal_",
    "glorot_uniform_",
    "he_normal_",
    "he_uniform_",
    "identity_",
    "init_model_",
    "lecun_normal_",
    "lecun_uniform_",
    "lsuv_",
    "orthogonal_",
    "variance_scaling_",
]
