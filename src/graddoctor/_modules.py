"""Module taxonomy: the one place that says which modules saturate, rectify, hold weights,
normalise or recur.

Every part of graddoctor asks this module: the probes (which outputs have a saturated
fraction or dead units), the Monitor (which families it records in the run's model
summary), the diagnosis (which layers a detector compares) and the remedies (which
modules a swap or an insertion targets). A live model is classified with
:func:`module_families` (``isinstance``, so subclasses count); a recorded run carries the
families of every module, and runs written before they were recorded fall back to
:func:`families_of_type_name`.

Families (stable strings):

* ``"weight_layer"``: holds a weight matrix the signal passes through (Linear, Bilinear,
  convolutions and transposed convolutions, recurrent layers and cells, and
  ``nn.MultiheadAttention``, whose projections run functionally inside it).
* ``"saturating"``: a bounded (or one-side bounded) activation whose derivative goes to 0
  at the bound: Sigmoid, Tanh, Hardtanh (not its subclass ReLU6), Softsign, Hardsigmoid,
  LogSigmoid.
* ``"rectifier"``: outputs exactly 0 on a half-line, so a unit can die: ReLU, ReLU6, a
  Threshold whose value is 0.
* ``"non_saturating"``: an activation whose derivative stays away from 0 on at least one
  side (the rectifiers, leaky and smooth variants, SELU...).
* ``"self_normalizing"``: SELU, whose fixed point needs LeCun initialisation
  (Klambauer et al. 2017).
* ``"normalization"``: batch, instance, layer, group, RMS and local response norms.
* ``"recurrent"``: ``nn.RNN/LSTM/GRU``, the RNN cells, and any module owning a
  ``weight_hh`` parameter (graddoctor's Elman and leaky layers).
"""

from __future__ import annotations

import math

from torch import nn

WEIGHT_LAYER = "weight_layer"
SATURATING = "saturating"
RECTIFIER = "rectifier"
NON_SATURATING = "non_saturating"
SELF_NORMALIZING = "self_normalizing"
NORMALIZATION = "normalization"
RECURRENT = "recurrent"
FAMILIES = (WEIGHT_LAYER, SATURATING, RECTIFIER, NON_SATURATING, SELF_NORMALIZING, NORMALIZATION, RECURRENT)

# dense and convolution layers with a well-defined output feature axis: what an init
# scheme re-initialises and what a normalisation layer can follow
FEEDFORWARD_LAYER_TYPES: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)

RECURRENT_TYPES: tuple[type[nn.Module], ...] = (nn.RNNBase, nn.RNNCellBase)

WEIGHT_LAYER_TYPES: tuple[type[nn.Module], ...] = (
    nn.Linear, nn.Bilinear, nn.modules.conv._ConvNd, *RECURRENT_TYPES, nn.MultiheadAttention,
)  # fmt: skip

SATURATING_TYPES: tuple[type[nn.Module], ...] = (
    nn.Sigmoid, nn.Tanh, nn.Hardtanh, nn.Softsign, nn.Hardsigmoid, nn.LogSigmoid,
)  # fmt: skip

RECTIFIER_TYPES: tuple[type[nn.Module], ...] = (nn.ReLU, nn.ReLU6, nn.Threshold)

NON_SATURATING_TYPES: tuple[type[nn.Module], ...] = (
    nn.ReLU, nn.ReLU6, nn.Threshold, nn.LeakyReLU, nn.PReLU, nn.RReLU, nn.ELU, nn.CELU, nn.SELU,
    nn.GELU, nn.SiLU, nn.Mish, nn.Hardswish, nn.Softplus,
)  # fmt: skip

# elementwise, shape-preserving activations of a hidden layer (Softmax, GLU and
# attention are not): what an activation swap may replace
ACTIVATION_TYPES: tuple[type[nn.Module], ...] = (
    *NON_SATURATING_TYPES, *SATURATING_TYPES, nn.Tanhshrink, nn.Softshrink, nn.Hardshrink,
)  # fmt: skip

NORM_TYPES: tuple[type[nn.Module], ...] = tuple(
    t
    for t in (
        nn.modules.batchnorm._BatchNorm,
        nn.modules.instancenorm._InstanceNorm,
        nn.LayerNorm,
        nn.GroupNorm,
        nn.LocalResponseNorm,
        getattr(nn, "RMSNorm", None),
    )
    if t is not None
)

# parameter-free modules that keep the feature/channel axis (dim 1) unchanged
SHAPE_PRESERVING_TYPES: tuple[type[nn.Module], ...] = (
    nn.Identity,
    nn.modules.dropout._DropoutNd,
    nn.AlphaDropout,
    nn.FeatureAlphaDropout,
    nn.modules.pooling._MaxPoolNd,
    nn.modules.pooling._AvgPoolNd,
    nn.modules.pooling._AdaptiveMaxPoolNd,
    nn.modules.pooling._AdaptiveAvgPoolNd,
    nn.modules.pooling._LPPoolNd,
)


def is_saturating(module: nn.Module) -> bool:
    """A saturating activation (ReLU6 subclasses Hardtanh but is a rectifier)."""
    return isinstance(module, SATURATING_TYPES) and not isinstance(module, nn.ReLU6)


def is_rectifier(module: nn.Module) -> bool:
    """An activation whose units can be exactly 0 for every input (dead units)."""
    if isinstance(module, nn.Threshold):
        return float(module.value) == 0.0
    return isinstance(module, (nn.ReLU, nn.ReLU6))


def is_recurrent(module: nn.Module) -> bool:
    """``nn.RNN/LSTM/GRU``, an RNN cell, or any module owning a ``weight_hh`` parameter."""
    return isinstance(module, RECURRENT_TYPES) or isinstance(
        getattr(module, "weight_hh", None), nn.Parameter
    )


def is_weight_layer(module: nn.Module) -> bool:
    """A module holding a weight the signal passes through (see the module docstring)."""
    return isinstance(module, WEIGHT_LAYER_TYPES) or is_recurrent(module)


def module_families(module: nn.Module) -> list[str]:
    """The families of a live module, in :data:`FAMILIES` order."""
    found = {
        WEIGHT_LAYER: is_weight_layer(module),
        SATURATING: is_saturating(module),
        RECTIFIER: is_rectifier(module),
        NON_SATURATING: isinstance(module, NON_SATURATING_TYPES),
        SELF_NORMALIZING: isinstance(module, nn.SELU),
        NORMALIZATION: isinstance(module, NORM_TYPES),
        RECURRENT: is_recurrent(module),
    }
    return [family for family in FAMILIES if found[family]]


def saturation_bounds(module: nn.Module) -> tuple[float, float] | None:
    """The output range ``(lo, hi)`` of a saturating activation (``lo`` may be ``-inf``), else None."""
    if not is_saturating(module):
        return None
    if isinstance(module, nn.Hardtanh):
        return float(module.min_val), float(module.max_val)
    if isinstance(module, (nn.Sigmoid, nn.Hardsigmoid)):
        return 0.0, 1.0
    if isinstance(module, nn.LogSigmoid):  # log sigmoid(x) < 0; saturates as x -> +inf
        return -math.inf, 0.0
    return -1.0, 1.0  # Tanh, Softsign


def _type_names(types: tuple[type[nn.Module], ...]) -> frozenset[str]:
    """Names of ``types`` and of their subclasses defined in ``torch.nn``."""
    names = set()
    for value in vars(nn).values():
        if isinstance(value, type) and issubclass(value, nn.Module) and issubclass(value, types):
            names.add(value.__name__)
    return frozenset(names)


# graddoctor's own recurrent layers (remedies) and torch's internal Linear subclass, by name:
# this module sits below the remedies and cannot import them
_EXTRA_NAMES = {
    WEIGHT_LAYER: {"ElmanRNN", "LeakyRNN", "NonDynamicallyQuantizableLinear"},
    RECURRENT: {"ElmanRNN", "LeakyRNN"},
}
_NAMES_BY_FAMILY = {
    WEIGHT_LAYER: _type_names(WEIGHT_LAYER_TYPES) | _EXTRA_NAMES[WEIGHT_LAYER],
    SATURATING: _type_names(SATURATING_TYPES) - {"ReLU6"},
    RECTIFIER: _type_names(RECTIFIER_TYPES),
    NON_SATURATING: _type_names(NON_SATURATING_TYPES),
    SELF_NORMALIZING: _type_names((nn.SELU,)),
    NORMALIZATION: _type_names(NORM_TYPES),
    RECURRENT: _type_names(RECURRENT_TYPES) | _EXTRA_NAMES[RECURRENT],
}


def families_of_type_name(type_name: str) -> list[str]:
    """The families of a module known only by its type name (runs without recorded families)."""
    return [family for family in FAMILIES if type_name in _NAMES_BY_FAMILY[family]]


__all__ = [
    "ACTIVATION_TYPES",
    "FAMILIES",
    "FEEDFORWARD_LAYER_TYPES",
    "NON_SATURATING",
    "NON_SATURATING_TYPES",
    "NORMALIZATION",
    "NORM_TYPES",
    "RECTIFIER",
    "RECTIFIER_TYPES",
    "RECURRENT",
    "RECURRENT_TYPES",
    "SATURATING",
    "SATURATING_TYPES",
    "SELF_NORMALIZING",
    "SHAPE_PRESERVING_TYPES",
    "WEIGHT_LAYER",
    "WEIGHT_LAYER_TYPES",
    "families_of_type_name",
    "is_rectifier",
    "is_recurrent",
    "is_saturating",
    "is_weight_layer",
    "module_families",
    "saturation_bounds",
]
