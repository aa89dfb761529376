r"""Swap saturating activations for non-saturating ones, and re-initialise to match.

A saturating activation (sigmoid, tanh) has a derivative close to zero for large
inputs, and at most 1/4 (sigmoid) everywhere, so the product of derivatives along a
deep network shrinks geometrically: gradients vanish. The ReLU family keeps a derivative
of 1 on the positive side. The weights feeding the new activation are re-initialised for
it: He et al. (2015), "Delving Deep into Rectifiers", for the ReLU family; LeCun normal
for SELU, which Klambauer et al. (2017), "Self-Normalizing Neural Networks", require.

The swap changes the curvature the learning rate meets: a sigmoid network that trained
(slowly) at lr 0.5 receives gradients several times larger once its layers are ReLU with
He init, and diverges at the same lr. The ``swap_activation`` remedy therefore also checks
the learning rate: a learning-rate range test (Smith 2017, "Cyclical Learning Rates for
Training Neural Networks") on the swapped model, and the lr lowered to the rate it
suggests when the problem's is higher.

Only activation *modules* can be swapped; ``torch.sigmoid(x)`` or ``F.tanh`` called
inside a ``forward`` is code and must be changed there.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from graddoctor._module_types import (
    ACTIVATION_TYPES,
    FEEDFORWARD_LAYER_TYPES,
    NORM_TYPES,
    SATURATING_TYPES,
    is_saturating,
)
from graddoctor.problem import Problem
from graddoctor.remedies._common import seeded_rng
from graddoctor.remedies._tree import (
    first_parameter,
    leaf_modules,
    name_matches,
    preceding_leaf,
    replace_module_,
    split_only,
)
from graddoctor.remedies.lr import with_lr_scaled
from graddoctor.remedies.lr_range import suggest_lr

LEAKY_RELU_SLOPE = 0.01
PRELU_INIT = 0.25

# target -> (module type, negative slope used by He init, or None for LeCun normal)
_TARGETS: dict[str, tuple[type[nn.Module], float | None]] = {
    "relu": (nn.ReLU, 0.0),
    "leaky_relu": (nn.LeakyReLU, LEAKY_RELU_SLOPE),
    "prelu": (nn.PReLU, PRELU_INIT),
    "elu": (nn.ELU, 0.0),
    "gelu": (nn.GELU, 0.0),
    "selu": (nn.SELU, None),
}


def _new_activation(to: str, like: torch.Tensor | None) -> nn.Module:
    if to == "relu":
        return nn.ReLU()
    if to == "leaky_relu":
        return nn.LeakyReLU(LEAKY_RELU_SLOPE)
    if to == "prelu":
        factory: dict[str, Any] = (
            {} if like is None else {"device": like.device, "dtype": like.dtype}
        )
        return nn.PReLU(num_parameters=1, init=PRELU_INIT, **factory)
    if to == "elu":
        return nn.ELU()
    if to == "gelu":
        return nn.GELU()
    return nn.SELU()


def reinit_for_activation_(
    layer: nn.Module, to: str, generator: torch.Generator | None = None
) -> None:
    r"""Re-initialise a Linear/ConvNd layer for the activation ``to`` that follows it.

    He normal for the ReLU family (He et al., 2015), LeCun normal for SELU (Klambauer et
    al., 2017); the bias is zeroed.

    .. math::
        W \sim \mathcal{N}\!\left(0, \frac{2}{(1 + a^2)\,\mathrm{fan\_in}}\right)
        \quad\text{(He, slope } a\text{)}, \qquad
        W \sim \mathcal{N}\!\left(0, \frac{1}{\mathrm{fan\_in}}\right) \quad\text{(LeCun)}

    with :math:`a = 0` for relu, elu and gelu, 0.01 for leaky_relu and 0.25 for prelu.

    Args:
        layer: an ``nn.Linear`` or ``nn.Conv1d/2d/3d``.
        to: the activation name (see :func:`swap_activations_`).
        generator: random generator for reproducible draws.
    """
    if to not in _TARGETS:
        raise ValueError(f"unknown activation {to!r}: choose one of {sorted(_TARGETS)}")
    if not isinstance(layer, FEEDFORWARD_LAYER_TYPES):
        raise TypeError(f"expected nn.Linear or nn.Conv1d/2d/3d, got {type(layer).__name__}")
    slope = _TARGETS[to][1]
    with torch.no_grad():
        if slope is None:
            nn.init.kaiming_normal_(
                layer.weight, mode="fan_in", nonlinearity="linear", generator=generator
            )
        else:
            nn.init.kaiming_normal_(
                layer.weight, a=slope, mode="fan_in", nonlinearity="leaky_relu", generator=generator
            )
        if layer.bias is not None:
            layer.bias.zero_()


def _is_transparent(module: nn.Module) -> bool:
    """Leaves stepped over when looking for the layer feeding an activation."""
    if isinstance(module, NORM_TYPES):
        return True
    return not isinstance(module, ACTIVATION_TYPES) and first_parameter(module) is None


def swap_activations_(
    model: nn.Module,
    to: str = "relu",
    only: Any = None,
    reinit: bool = True,
    generator: torch.Generator | None = None,
) -> list[dict[str, Any]]:
    r"""Replace saturating activation modules of ``model`` by ``to``, in place.

    By default the swapped modules are the saturating ones: ``nn.Sigmoid``, ``nn.Tanh``,
    ``nn.Hardtanh`` (not its subclass ``nn.ReLU6``), ``nn.Softsign``, ``nn.Hardsigmoid``
    and ``nn.LogSigmoid``, wherever they sit (Sequential, ModuleList, ModuleDict,
    attributes of custom modules). One activation module registered at several places is
    replaced by one new module at all of them.

    With ``reinit=True`` the Linear/ConvNd layer feeding each swapped activation (the
    nearest one before it in registration order, stepping over parameter-free modules
    such as Dropout/Flatten/pooling and over normalisation layers) is re-initialised with
    :func:`reinit_for_activation_`: He normal (He et al., 2015) with slope
    :math:`a` = 0 (relu, elu, gelu), 0.01 (leaky_relu), 0.25 (prelu); LeCun normal
    :math:`\mathcal{N}(0, 1/\mathrm{fan\_in})` for selu (Klambauer et al., 2017).

    Args:
        model: the network, changed in place.
        to: ``"relu"``, ``"leaky_relu"`` (slope 0.01), ``"prelu"`` (one parameter,
            init 0.25, on the device/dtype of the model), ``"elu"``, ``"selu"`` or ``"gelu"``.
        only: restricts the swap: activation module types (these replace the default
            saturating set, e.g. ``(nn.ReLU,)`` to turn dead-prone ReLUs into leaky ones)
            and/or fnmatch patterns on the dotted module name (``"encoder.*"``). Types
            and patterns combine with AND.
        reinit: re-initialise the layer feeding each swapped activation.
        generator: random generator for the re-initialisation.

    Returns:
        one dict per swapped slot: ``name`` (dotted), ``old`` and ``new`` (class names),
        ``reinitialised_layer`` (dotted name, or None when no Linear/Conv feeds it or
        ``reinit`` is False).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if to not in _TARGETS:
        raise ValueError(f"unknown activation to={to!r}: choose one of {sorted(_TARGETS)}")
    types, patterns = split_only(only, ACTIVATION_TYPES, "activation")
    target_type = _TARGETS[to][0]

    def selected(name: str, module: nn.Module) -> bool:
        if type(module) is target_type:
            return False
        kind_ok = isinstance(module, types) if types else is_saturating(module)
        return kind_ok and name_matches(name, patterns)

    leaves = leaf_modules(model)
    chosen = [i for i, (name, module) in enumerate(leaves) if name and selected(name, module)]
    if not chosen:
        wanted = ", ".join(t.__name__ for t in (types or SATURATING_TYPES))
        where = f" with names matching {list(patterns)}" if patterns else ""
        raise ValueError(
            f"no activation modules of types ({wanted}){where} were found in the model. "
            "Activations called as functions in forward (torch.sigmoid, F.tanh...) are not "
            "modules and must be changed in the code."
        )

    like = first_parameter(model)
    replacements: dict[int, nn.Module] = {}  # id(old activation) -> its replacement
    done_layers: set[int] = set()
    records: list[dict[str, Any]] = []
    for index in chosen:
        name, old = leaves[index]
        layer_index = preceding_leaf(
            leaves, index, lambda m: isinstance(m, FEEDFORWARD_LAYER_TYPES), _is_transparent
        )
        layer_name = None if layer_index is None else leaves[layer_index][0]
        if id(old) not in replacements:
            source = first_parameter(leaves[layer_index][1]) if layer_index is not None else like
            replacements[id(old)] = _new_activation(to, source)
        new = replacements[id(old)]
        replace_module_(model, name, new)
        reinitialised = None
        if reinit and layer_index is not None:
            layer = leaves[layer_index][1]
            if id(layer) not in done_layers:
                reinit_for_activation_(layer, to, generator=generator)
                done_layers.add(id(layer))
            reinitialised = layer_name
        records.append(
            {
                "name": name,
                "old": type(old).__name__,
                "new": type(new).__name__,
                "reinitialised_layer": reinitialised,
            }
        )
    return records


def _swap_check(problem: Problem) -> str | None:
    if any(is_saturating(module) for _, module in leaf_modules(problem.model)):
        return None
    return (
        "the model has no saturating activation module (nn.Sigmoid, nn.Tanh, nn.Hardtanh, "
        "nn.Softsign...) to swap; activations called in forward (torch.tanh) must be changed in the code"
    )


# batches the learning-rate range test of a swap sweeps (Smith 2017 uses a few hundred)
RANGE_TEST_STEPS = 100


def stable_lr_factor(problem: Problem) -> float:
    """The factor (at most 1) that brings the problem's largest lr down to the range test's suggestion.

    Returns:
        ``suggested_lr / lr`` when the problem's lr is above what :func:`suggest_lr` finds,
        else 1.0 (also when the range test cannot run).
    """
    optimizer = problem.make_optimizer(problem.model)
    current = max(float(group["lr"]) for group in optimizer.param_groups)
    try:
        suggested = suggest_lr(
            problem, data=problem.take(RANGE_TEST_STEPS), steps=RANGE_TEST_STEPS
        ).suggested_lr
    except ValueError:  # not even the smallest lr gave a finite loss: nothing to suggest
        return 1.0
    return suggested / current if 0 < suggested < current else 1.0


def _swap(problem: Problem, params: dict[str, Any]) -> Problem:
    with seeded_rng(params["seed"], problem.model):
        swap_activations_(problem.model, to=params["to"])
    if not params["check_lr"]:
        return problem
    factor = stable_lr_factor(problem)
    return problem if factor == 1.0 else with_lr_scaled(problem, factor)
