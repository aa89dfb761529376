r"""Insert batch or layer normalisation next to the activations of a model.

Batch normalisation (Ioffe & Szegedy, 2015, "Batch Normalization: Accelerating Deep
Network Training by Reducing Internal Covariate Shift") re-centres and re-scales each
feature over the mini-batch, then applies a learned scale and shift:

.. math::
    \hat{x}_i = \frac{x_i - \mu_B}{\sqrt{\sigma_B^2 + \epsilon}}, \qquad
    y_i = \gamma \hat{x}_i + \beta

so the pre-activations keep unit scale whatever the weights do, and the gradient no
longer shrinks or grows with the product of weight scales. Layer normalisation (Ba,
Kiros & Hinton, 2016, "Layer Normalization") computes the same statistics over the
features of each sample instead of over the batch: it is the choice for sequence models
whose activations are ``[B, T, F]`` (``BatchNorm1d`` would normalise over the wrong axis)
and for small or variable batches.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from torch import nn

from graddoctor._module_types import (
    ACTIVATION_TYPES,
    FEEDFORWARD_LAYER_TYPES,
    NORM_TYPES,
    SHAPE_PRESERVING_TYPES,
)
from graddoctor.problem import Problem
from graddoctor.remedies._tree import (
    leaf_modules,
    name_matches,
    parent_of,
    preceding_leaf,
    rebuild_sequential_,
    replace_module_,
    split_only,
    unique_child_name,
)

_BATCH_NORMS = {nn.Conv1d: nn.BatchNorm1d, nn.Conv2d: nn.BatchNorm2d, nn.Conv3d: nn.BatchNorm3d}


def norm_for_layer(layer: nn.Module, kind: str = "batch") -> tuple[nn.Module, str]:
    """The normalisation module for the output of ``layer``, on its device and dtype.

    ============  ===================  =====================
    layer         ``kind="batch"``     ``kind="layer"``
    ============  ===================  =====================
    Linear        BatchNorm1d(out)     LayerNorm(out)
    ConvNd        BatchNormNd(out)     GroupNorm(1, out)
    ============  ===================  =====================

    ``GroupNorm(1, C)`` normalises each sample over all its channels and positions, i.e.
    layer normalisation for feature maps, with a per-channel scale and shift.

    Returns:
        ``(module, tag)`` with tag ``"bn"``, ``"ln"`` or ``"gn"``.
    """
    if kind not in ("batch", "layer"):
        raise ValueError(f"kind must be 'batch' or 'layer', got {kind!r}")
    if not isinstance(layer, FEEDFORWARD_LAYER_TYPES):
        raise TypeError(f"expected nn.Linear or nn.Conv1d/2d/3d, got {type(layer).__name__}")
    factory = {"device": layer.weight.device, "dtype": layer.weight.dtype}
    if isinstance(layer, nn.Linear):
        if kind == "batch":
            return nn.BatchNorm1d(layer.out_features, **factory), "bn"
        return nn.LayerNorm(layer.out_features, **factory), "ln"
    if kind == "layer":
        return nn.GroupNorm(1, layer.out_channels, **factory), "gn"
    batch_norm = next(norm for conv, norm in _BATCH_NORMS.items() if isinstance(layer, conv))
    return batch_norm(layer.out_channels, **factory), "bn"


def _is_layer_or_norm(module: nn.Module) -> bool:
    return isinstance(module, FEEDFORWARD_LAYER_TYPES + NORM_TYPES)


def _is_shape_preserving(module: nn.Module) -> bool:
    return isinstance(module, SHAPE_PRESERVING_TYPES)


def _norm_follows(leaves: list[tuple[str, nn.Module]], index: int) -> bool:
    """Whether a normalisation module comes right after ``leaves[index]``."""
    for _, module in leaves[index + 1 :]:
        if isinstance(module, NORM_TYPES):
            return True
        if not _is_shape_preserving(module):
            return False
    return False


def insert_batchnorm_(
    model: nn.Module, where: str = "before", kind: str = "batch", only: Any = None
) -> list[str]:
    r"""Insert a normalisation module before or after each activation fed by a layer.

    An activation is handled when it is one of the elementwise activation modules (the
    ReLU family, ELU/SELU/CELU/GELU/SiLU/Mish/Hardswish/Softplus, Sigmoid, Tanh,
    Hardtanh, Softsign, Hardsigmoid, LogSigmoid and the shrink functions; not Softmax)
    and the nearest module before it in registration order is an ``nn.Linear`` or
    ``nn.Conv1d/2d/3d``, with only Dropout, Identity or pooling modules in between. The
    norm has the layer's output size (see :func:`norm_for_layer`) and its device/dtype.

    Where the activation is a child of an ``nn.Sequential``, the norm becomes a sibling,
    named ``<activation name>_bn`` (``_ln``, ``_gn``), and the Sequential is rebuilt in
    place, e.g. the MLP ``h1, a1, h2, a2, o`` becomes ``h1, a1_bn, a1, h2, a2_bn, a2, o``
    with ``where="before"``. Elsewhere (attribute of a custom module, ModuleList or
    ModuleDict entry) the activation is replaced by ``nn.Sequential(bn=norm, act=act)``
    (or ``act, bn`` for ``where="after"``), so ``block.act`` becomes ``block.act.bn`` and
    ``block.act.act``. The layer's bias is kept: before a BatchNorm it is redundant with
    the norm's shift :math:`\beta` but harmless.

    Activations that already have a normalisation module between the layer and them, or
    right after them, are left alone, so a second call inserts nothing (and returns ``[]``).

    Registration order stands in for execution order: a custom ``forward`` that calls
    its children in another order, or one activation module after several layers, is
    not understood; restrict such models with ``only``.

    Args:
        model: the network, changed in place.
        where: ``"before"`` the activation (as in Ioffe & Szegedy, 2015) or ``"after"``.
        kind: ``"batch"`` (BatchNorm1d/2d/3d) or ``"layer"`` (LayerNorm for Linear, for
            ``[B, T, F]`` sequence models; GroupNorm(1, C) for ConvNd; Ba et al., 2016).
        only: activation types and/or fnmatch patterns on the activation's dotted name;
            types and patterns combine with AND.

    Returns:
        the dotted names of the inserted modules, as in ``model.named_modules()`` now.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if where not in ("before", "after"):
        raise ValueError(f"where must be 'before' or 'after', got {where!r}")
    if kind not in ("batch", "layer"):
        raise ValueError(f"kind must be 'batch' or 'layer', got {kind!r}")
    types, patterns = split_only(only, ACTIVATION_TYPES, "activation")
    activation_types = types or ACTIVATION_TYPES

    leaves = leaf_modules(model)
    plan: list[tuple[str, nn.Module, nn.Module, str]] = []  # (activation name, act, norm, tag)
    already = 0
    for index, (name, module) in enumerate(leaves):
        if not name or not isinstance(module, activation_types) or not name_matches(name, patterns):
            continue
        found = preceding_leaf(leaves, index, _is_layer_or_norm, _is_shape_preserving)
        if found is None:
            continue
        layer = leaves[found][1]
        if isinstance(layer, NORM_TYPES) or _norm_follows(leaves, index):
            already += 1
            continue
        norm, tag = norm_for_layer(layer, kind)
        plan.append((name, module, norm, tag))

    if not plan:
        if already:
            return []
        raise ValueError(
            "no activation module directly fed by an nn.Linear or nn.Conv1d/2d/3d was found "
            "(in registration order, with only Dropout/Identity/pooling in between)"
            + (f" among activations matching only={only!r}" if only is not None else "")
            + ". Functional activations (torch.relu in forward) and layers registered in "
            "another order than forward uses them cannot be handled: add the norm in the code."
        )

    sequential_edits: dict[int, tuple[nn.Sequential, dict[str, tuple[nn.Module, str]]]] = {}
    for name, act, norm, tag in plan:
        parent, key = parent_of(model, name)
        if isinstance(parent, nn.Sequential):
            sequential_edits.setdefault(id(parent), (parent, {}))[1][key] = (norm, tag)
        else:
            pair = [(tag, norm), ("act", act)] if where == "before" else [("act", act), (tag, norm)]
            replace_module_(model, name, nn.Sequential(OrderedDict(pair)))
    for sequential, edits in sequential_edits.values():
        children: list[tuple[str, nn.Module]] = []
        taken = set(sequential._modules)
        for key, child in sequential._modules.items():
            if key not in edits:
                children.append((key, child))
                continue
            norm, tag = edits[key]
            norm_name = unique_child_name(sequential, f"{key}_{tag}", taken)
            taken.add(norm_name)
            pair = (
                [(norm_name, norm), (key, child)]
                if where == "before"
                else [(key, child), (norm_name, norm)]
            )
            children.extend(pair)
        rebuild_sequential_(sequential, children)

    inserted = {id(norm) for _, _, norm, _ in plan}
    return [name for name, module in model.named_modules() if id(module) in inserted]


def _batchnorm_check(problem: Problem) -> str | None:
    leaves = leaf_modules(problem.model)
    for index, (name, module) in enumerate(leaves):
        if not name or not isinstance(module, ACTIVATION_TYPES):
            continue
        found = preceding_leaf(leaves, index, _is_layer_or_norm, _is_shape_preserving)
        if (
            found is not None
            and not isinstance(leaves[found][1], NORM_TYPES)
            and not _norm_follows(leaves, index)
        ):
            return None
    return (
        "no activation module directly fed by an nn.Linear / nn.ConvNd without a normalisation "
        "layer next to it: nothing to normalise"
    )


def _batchnorm(problem: Problem, params: dict[str, Any]) -> Problem:
    insert_batchnorm_(problem.model, where=params["where"], kind=params["kind"])
    return problem
