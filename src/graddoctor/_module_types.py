"""The module taxonomy of :mod:`graddoctor._modules` for live models: ``torch.nn`` classes.

The families are tables of type names (:mod:`graddoctor._modules`, read without torch by
everything that reads a recorded run); the class sets here are the ``torch.nn`` classes
those names name, so a live module is classified with ``isinstance`` and subclasses
count. Names torch does not define (graddoctor's own recurrent layers; ``RMSNorm`` before
torch 2.4) are left out of the class sets.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from types import ModuleType

from torch import nn

from ._modules import (
    ACTIVATION_NAMES,
    FAMILIES,
    FEEDFORWARD_LAYER_NAMES,
    NON_SATURATING,
    NON_SATURATING_NAMES,
    NORM_NAMES,
    NORMALIZATION,
    RECTIFIER,
    RECTIFIER_NAMES,
    RECURRENT,
    RECURRENT_NAMES,
    SATURATING,
    SATURATING_NAMES,
    SELF_NORMALIZING,
    SELF_NORMALIZING_NAMES,
    SHAPE_PRESERVING_NAMES,
    WEIGHT_LAYER,
    WEIGHT_LAYER_NAMES,
)


def _module_classes() -> dict[str, type[nn.Module]]:
    """Every module class of ``torch.nn`` and of its ``modules`` submodules (private bases too), by name."""
    namespaces = [nn, *(v for v in vars(nn.modules).values() if isinstance(v, ModuleType))]
    found: dict[str, type[nn.Module]] = {}
    for namespace in namespaces:
        for value in vars(namespace).values():
            if isinstance(value, type) and issubclass(value, nn.Module):
                found.setdefault(value.__name__, value)
    return found


_CLASSES = _module_classes()


def classes_named(names: Iterable[str]) -> tuple[type[nn.Module], ...]:
    """The ``torch.nn`` classes of ``names``, in order; names torch does not define are left out."""
    return tuple(dict.fromkeys(_CLASSES[name] for name in names if name in _CLASSES))


FEEDFORWARD_LAYER_TYPES = classes_named(FEEDFORWARD_LAYER_NAMES)
RECURRENT_TYPES = classes_named(RECURRENT_NAMES)
WEIGHT_LAYER_TYPES = classes_named(WEIGHT_LAYER_NAMES)
SATURATING_TYPES = classes_named(SATURATING_NAMES)
RECTIFIER_TYPES = classes_named(RECTIFIER_NAMES)
NON_SATURATING_TYPES = classes_named(NON_SATURATING_NAMES)
SELF_NORMALIZING_TYPES = classes_named(SELF_NORMALIZING_NAMES)
ACTIVATION_TYPES = classes_named(ACTIVATION_NAMES)
NORM_TYPES = classes_named(NORM_NAMES)
SHAPE_PRESERVING_TYPES = classes_named(SHAPE_PRESERVING_NAMES)


def is_saturating(module: nn.Module) -> bool:
    """A saturating activation (ReLU6 subclasses Hardtanh but is a rectifier)."""
    return isinstance(module, SATURATING_TYPES) and not isinstance(module, nn.ReLU6)


def is_rectifier(module: nn.Module) -> bool:
    """An activation whose units can be exactly 0 for every input (dead units)."""
    if isinstance(module, nn.Threshold):
        return float(module.value) == 0.0
    return isinstance(module, RECTIFIER_TYPES)


def is_recurrent(module: nn.Module) -> bool:
    """``nn.RNN/LSTM/GRU``, an RNN cell, or any module owning a ``weight_hh`` parameter."""
    return isinstance(module, RECURRENT_TYPES) or isinstance(
        getattr(module, "weight_hh", None), nn.Parameter
    )


def is_weight_layer(module: nn.Module) -> bool:
    """A module holding a weight the signal passes through (see :mod:`graddoctor._modules`)."""
    return isinstance(module, WEIGHT_LAYER_TYPES) or is_recurrent(module)


def module_families(module: nn.Module) -> list[str]:
    """The families of a live module, in :data:`graddoctor._modules.FAMILIES` order."""
    found = {
        WEIGHT_LAYER: is_weight_layer(module),
        SATURATING: is_saturating(module),
        RECTIFIER: is_rectifier(module),
        NON_SATURATING: isinstance(module, NON_SATURATING_TYPES),
        SELF_NORMALIZING: isinstance(module, SELF_NORMALIZING_TYPES),
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


__all__ = [
    "ACTIVATION_TYPES",
    "FEEDFORWARD_LAYER_TYPES",
    "NON_SATURATING_TYPES",
    "NORM_TYPES",
    "RECTIFIER_TYPES",
    "RECURRENT_TYPES",
    "SATURATING_TYPES",
    "SELF_NORMALIZING_TYPES",
    "SHAPE_PRESERVING_TYPES",
    "WEIGHT_LAYER_TYPES",
    "classes_named",
    "is_rectifier",
    "is_recurrent",
    "is_saturating",
    "is_weight_layer",
    "module_families",
    "saturation_bounds",
]
