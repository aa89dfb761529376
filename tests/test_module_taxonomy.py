"""The module taxonomy by type name (``_modules``) and by torch class (``_module_types``) agree.

The reference is written separately: each family as the ``torch.nn`` base classes it
stands for, and a module class belongs when it subclasses one of them.
"""

from __future__ import annotations

import subprocess
import sys
from types import ModuleType

import pytest
from torch import nn

from graddoctor import _module_types as types
from graddoctor._modules import (
    FAMILIES,
    NON_SATURATING,
    NORMALIZATION,
    RECTIFIER,
    RECURRENT,
    SATURATING,
    SELF_NORMALIZING,
    WEIGHT_LAYER,
    families_of_type_name,
)

_RECURRENT = (nn.RNNBase, nn.RNNCellBase)
_SATURATING = (nn.Sigmoid, nn.Tanh, nn.Hardtanh, nn.Softsign, nn.Hardsigmoid, nn.LogSigmoid)
_NON_SATURATING = (
    nn.ReLU, nn.ReLU6, nn.Threshold, nn.LeakyReLU, nn.PReLU, nn.RReLU, nn.ELU, nn.CELU, nn.SELU,
    nn.GELU, nn.SiLU, nn.Mish, nn.Hardswish, nn.Softplus,
)  # fmt: skip
_NORM = (
    nn.modules.batchnorm._BatchNorm, nn.modules.instancenorm._InstanceNorm, nn.LayerNorm,
    nn.GroupNorm, nn.LocalResponseNorm, nn.RMSNorm,
)  # fmt: skip
REFERENCE = {
    WEIGHT_LAYER: (nn.Linear, nn.Bilinear, nn.modules.conv._ConvNd, *_RECURRENT, nn.MultiheadAttention),
    SATURATING: _SATURATING,
    RECTIFIER: (nn.ReLU, nn.ReLU6, nn.Threshold),
    NON_SATURATING: _NON_SATURATING,
    SELF_NORMALIZING: (nn.SELU,),
    NORMALIZATION: _NORM,
    RECURRENT: _RECURRENT,
}
CLASS_SETS = {
    "FEEDFORWARD_LAYER_TYPES": (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d),
    "RECURRENT_TYPES": _RECURRENT,
    "WEIGHT_LAYER_TYPES": REFERENCE[WEIGHT_LAYER],
    "SATURATING_TYPES": _SATURATING,
    "RECTIFIER_TYPES": REFERENCE[RECTIFIER],
    "NON_SATURATING_TYPES": _NON_SATURATING,
    "ACTIVATION_TYPES": (
        *_NON_SATURATING, *_SATURATING, nn.Tanhshrink, nn.Softshrink, nn.Hardshrink,
    ),  # fmt: skip
    "NORM_TYPES": _NORM,
    "SHAPE_PRESERVING_TYPES": (
        nn.Identity, nn.modules.dropout._DropoutNd, nn.AlphaDropout, nn.FeatureAlphaDropout,
        nn.modules.pooling._MaxPoolNd, nn.modules.pooling._AvgPoolNd,
        nn.modules.pooling._AdaptiveMaxPoolNd, nn.modules.pooling._AdaptiveAvgPoolNd,
        nn.modules.pooling._LPPoolNd,
    ),  # fmt: skip
}


def _torch_module_classes() -> list[type[nn.Module]]:
    found = {}
    for namespace in (nn, *(v for v in vars(nn.modules).values() if isinstance(v, ModuleType))):
        for value in vars(namespace).values():
            if isinstance(value, type) and issubclass(value, nn.Module):
                found[value] = None
    return list(found)


CLASSES = _torch_module_classes()


def _reference_families(cls: type[nn.Module]) -> list[str]:
    found = [family for family in FAMILIES if issubclass(cls, REFERENCE[family])]
    if issubclass(cls, nn.ReLU6):  # a Hardtanh subclass, but a rectifier
        found.remove(SATURATING)
    return found


@pytest.mark.parametrize("cls", [c for c in CLASSES if not c.__name__.startswith("_")], ids=str)
def test_families_of_a_type_name_are_those_of_its_class(cls):
    assert families_of_type_name(cls.__name__) == _reference_families(cls)


def test_graddoctors_own_recurrent_layers_are_named():
    for name in ("ElmanRNN", "LeakyRNN"):
        assert families_of_type_name(name) == [WEIGHT_LAYER, RECURRENT]
    assert families_of_type_name("NonDynamicallyQuantizableLinear") == [WEIGHT_LAYER]
    assert families_of_type_name("MyBlock") == []


@pytest.mark.parametrize("name", CLASS_SETS)
def test_class_sets_match_the_reference_bases(name):
    derived, reference = getattr(types, name), CLASS_SETS[name]
    wrong = [c.__name__ for c in CLASSES if issubclass(c, derived) != issubclass(c, reference)]
    assert wrong == []


def test_a_live_subclass_is_classified_by_its_base():
    class MyConv(nn.Conv2d):
        pass

    class MyNorm(nn.modules.batchnorm._BatchNorm):
        pass

    assert types.module_families(MyConv(1, 1, 1)) == [WEIGHT_LAYER]
    assert types.module_families(MyNorm(4)) == [NORMALIZATION]
    assert types.module_families(nn.ReLU6()) == [RECTIFIER, NON_SATURATING]
    assert types.module_families(nn.Threshold(0.5, 1.0)) == [NON_SATURATING]


def test_the_type_names_import_without_torch():
    code = "import sys, graddoctor._modules\nprint('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
