"""Module taxonomy: the one place that says which modules saturate, rectify, hold weights,
normalise or recur, as tables of ``torch.nn`` type names (no torch import).

Every part of graddoctor asks this module: the probes (which outputs have a saturated
fraction or dead units), the Monitor (which families it records in the run's model
summary), the diagnosis (which layers a detector compares) and the remedies (which
modules a swap or an insertion targets). A recorded run stores each module's type name
and families, so reading it (``graddoctor show``, ``diagnose``, ``report``) needs only
these names: runs written before families were recorded fall back to
:func:`families_of_type_name`. A live model is classified by
:mod:`graddoctor._module_types`, whose ``torch.nn`` class sets are the classes named
here (``isinstance``, so subclasses count; a name starting with ``_`` is a base class of
``torch.nn.modules``, e.g. ``_ConvNd``, whose subclasses all belong).

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

WEIGHT_LAYER = "weight_layer"
SATURATING = "saturating"
RECTIFIER = "rectifier"
NON_SATURATING = "non_saturating"
SELF_NORMALIZING = "self_normalizing"
NORMALIZATION = "normalization"
RECURRENT = "recurrent"
FAMILIES = (WEIGHT_LAYER, SATURATING, RECTIFIER, NON_SATURATING, SELF_NORMALIZING, NORMALIZATION, RECURRENT)

# graddoctor's own recurrent layers (remedies) are named too: this module sits below the
# remedies and cannot import them (a live one is recurrent by its weight_hh parameter)
RECURRENT_NAMES = (
    "RNNBase", "RNN", "LSTM", "GRU", "RNNCellBase", "RNNCell", "LSTMCell", "GRUCell",
    "ElmanRNN", "LeakyRNN",
)  # fmt: skip

WEIGHT_LAYER_NAMES = (
    "Linear", "LazyLinear", "NonDynamicallyQuantizableLinear", "Bilinear",
    "_ConvNd", "Conv1d", "Conv2d", "Conv3d", "LazyConv1d", "LazyConv2d", "LazyConv3d",
    "ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d",
    "LazyConvTranspose1d", "LazyConvTranspose2d", "LazyConvTranspose3d",
    *RECURRENT_NAMES, "MultiheadAttention",
)  # fmt: skip

SATURATING_NAMES = ("Sigmoid", "Tanh", "Hardtanh", "Softsign", "Hardsigmoid", "LogSigmoid")

RECTIFIER_NAMES = ("ReLU", "ReLU6", "Threshold")

NON_SATURATING_NAMES = (
    *RECTIFIER_NAMES, "LeakyReLU", "PReLU", "RReLU", "ELU", "CELU", "SELU", "GELU", "SiLU",
    "Mish", "Hardswish", "Softplus",
)  # fmt: skip

SELF_NORMALIZING_NAMES = ("SELU",)

NORM_NAMES = (
    "_BatchNorm", "BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "SyncBatchNorm",
    "LazyBatchNorm1d", "LazyBatchNorm2d", "LazyBatchNorm3d",
    "_InstanceNorm", "InstanceNorm1d", "InstanceNorm2d", "InstanceNorm3d",
    "LazyInstanceNorm1d", "LazyInstanceNorm2d", "LazyInstanceNorm3d",
    "LayerNorm", "GroupNorm", "LocalResponseNorm", "RMSNorm",
)  # fmt: skip

# dense and convolution layers with a well-defined output feature axis: what an init
# scheme re-initialises and what a normalisation layer can follow
FEEDFORWARD_LAYER_NAMES = ("Linear", "Conv1d", "Conv2d", "Conv3d")

# elementwise, shape-preserving activations of a hidden layer (Softmax, GLU and
# attention are not): what an activation swap may replace
ACTIVATION_NAMES = (
    *NON_SATURATING_NAMES, *SATURATING_NAMES, "Tanhshrink", "Softshrink", "Hardshrink",
)  # fmt: skip

# parameter-free modules that keep the feature/channel axis (dim 1) unchanged
SHAPE_PRESERVING_NAMES = (
    "Identity", "_DropoutNd", "AlphaDropout", "FeatureAlphaDropout", "_MaxPoolNd", "_AvgPoolNd",
    "_AdaptiveMaxPoolNd", "_AdaptiveAvgPoolNd", "_LPPoolNd",
)  # fmt: skip

# the type names of each family: a module whose type is named here belongs to it
NAMES_BY_FAMILY: dict[str, frozenset[str]] = {
    WEIGHT_LAYER: frozenset(WEIGHT_LAYER_NAMES),
    SATURATING: frozenset(SATURATING_NAMES),
    RECTIFIER: frozenset(RECTIFIER_NAMES),
    NON_SATURATING: frozenset(NON_SATURATING_NAMES),
    SELF_NORMALIZING: frozenset(SELF_NORMALIZING_NAMES),
    NORMALIZATION: frozenset(NORM_NAMES),
    RECURRENT: frozenset(RECURRENT_NAMES),
}


def families_of_type_name(type_name: str) -> list[str]:
    """The families of a module known only by its type name (runs without recorded families)."""
    return [family for family in FAMILIES if type_name in NAMES_BY_FAMILY[family]]


__all__ = [
    "ACTIVATION_NAMES",
    "FAMILIES",
    "FEEDFORWARD_LAYER_NAMES",
    "NAMES_BY_FAMILY",
    "NON_SATURATING",
    "NON_SATURATING_NAMES",
    "NORMALIZATION",
    "NORM_NAMES",
    "RECTIFIER",
    "RECTIFIER_NAMES",
    "RECURRENT",
    "RECURRENT_NAMES",
    "SATURATING",
    "SATURATING_NAMES",
    "SELF_NORMALIZING",
    "SELF_NORMALIZING_NAMES",
    "SHAPE_PRESERVING_NAMES",
    "WEIGHT_LAYER",
    "WEIGHT_LAYER_NAMES",
    "families_of_type_name",
]
