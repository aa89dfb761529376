r"""Weight initialisation remedies for vanishing and exploding gradients (``graddoctor.init`` re-exports this).

Variance-scaling schemes keep the variance of activations (forward) and gradients
(backward) constant from layer to layer: Glorot & Bengio (2010) for saturating
activations, He et al. (2015) for rectifiers, LeCun et al. (1998) / Klambauer et al. (2017)
for SELU. ``orthogonal_`` (Saxe et al. 2014) and ``identity_`` (Le et al. 2015) target
recurrent weights, ``lsuv_`` (Mishkin & Matas 2016) calibrates on data, and
``init_model_`` picks a scheme per layer from the activation that follows it.

All ``*_normal_`` schemes are plain normal, as in ``torch.nn.init``; Keras's truncated
variants are ``variance_scaling_(..., distribution="truncated_normal")``, or by their Keras
names ``keras_init_(kernel, "he_normal")`` (``keras_names``: Keras' statistics and fans).
"""

from graddoctor.remedies.init.keras_names import (
    KERAS_INITIALIZERS,
    VarianceScaling,
    keras_init_,
    keras_initializer,
)
from graddoctor.remedies.init.lsuv import LSUVLayer, lsuv_
from graddoctor.remedies.init.model import InitChoice, init_model_
from graddoctor.remedies.init.orthogonal import identity_, orthogonal_
from graddoctor.remedies.init.schemes import (
    TRUNCATED_NORMAL_STD,
    fan_in_and_fan_out,
    glorot_normal_,
    glorot_uniform_,
    he_normal_,
    he_uniform_,
    lecun_normal_,
    lecun_uniform_,
    variance_scaling_,
)

__all__ = [
    "KERAS_INITIALIZERS",
    "TRUNCATED_NORMAL_STD",
    "VarianceScaling",
    "InitChoice",
    "LSUVLayer",
    "fan_in_and_fan_out",
    "glorot_normal_",
    "glorot_uniform_",
    "he_normal_",
    "he_uniform_",
    "identity_",
    "init_model_",
    "keras_init_",
    "keras_initializer",
    "lecun_normal_",
    "lecun_uniform_",
    "lsuv_",
    "orthogonal_",
    "variance_scaling_",
]
