"""A Keras model as graddoctor's module tree: one torch module standing for each Keras layer.

On the torch backend a Keras layer is a ``torch.nn.Module`` and its weights are torch
parameters, but the layers are not registered as child modules (the model holds them in
lists) and their classes are Keras', so a Monitor on the model itself would see no layer
and no family. :func:`mirror_model` builds a plain ``nn.Module`` with one child per Keras
layer that owns weights or applies an activation:

* the child is named by the layer's Keras path relative to the model (``dense``,
  ``block/dense_1``) and holds the layer's torch parameters under their Keras names
  (``kernel``, ``bias``, ``gamma``...), so the run's columns read ``dense.kernel``
  (graddoctor groups a layer's parameters on the last ``.``); non-trainable Keras
  variables (batch norm's moving statistics) are its buffers, as in torch;
* its class is named like the Keras layer (``Dense``) and derives from the torch classes
  that give it its families in graddoctor's taxonomy (``graddoctor._modules``): a Dense
  or convolution derives from ``nn.Linear`` (a weight layer whose units sit on the last
  axis, Keras' channels-last), a layer with ``activation="sigmoid"`` from ``nn.Sigmoid``
  too, ``BatchNormalization`` from torch's batch norm, and so on;
* a forward hook on the Keras layer passes its input and output through the child (an
  identity), so the Monitor's module hooks on the child see the Keras layer's output and
  its gradient. A Dense layer's output is after its activation, as Keras defines it.

The parameters are shared, never copied: measuring reads the Keras weights themselves.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

# Keras activation function names -> the torch activation class carrying the same family
_ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU, "relu6": nn.ReLU6, "leaky_relu": nn.LeakyReLU, "elu": nn.ELU,
    "celu": nn.CELU, "selu": nn.SELU, "gelu": nn.GELU, "silu": nn.SiLU, "swish": nn.SiLU,
    "hard_silu": nn.Hardswish, "hard_swish": nn.Hardswish, "mish": nn.Mish,
    "softplus": nn.Softplus, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "softsign": nn.Softsign,
    "hard_sigmoid": nn.Hardsigmoid, "hard_tanh": nn.Hardtanh, "log_sigmoid": nn.LogSigmoid,
}  # fmt: skip


class KerasLayerMirror(nn.Module):
    """Stands for one Keras layer: its weights as parameters, its output through ``forward``.

    Attributes:
        layer: the Keras layer.
    """

    def __init__(self, layer: Any) -> None:
        nn.Module.__init__(self)
        self.layer = _Opaque(layer)
        taken: set[str] = set()
        for variable in [*layer._trainable_variables, *layer._non_trainable_variables]:
            tensor = torch_tensor(variable)
            name = _unique(variable.name.replace(".", "_") or "weight", taken)
            if isinstance(tensor, nn.Parameter) and tensor.requires_grad:
                self.register_parameter(name, tensor)
            else:
                self.register_buffer(name, tensor, persistent=False)
        # the attributes graddoctor's taxonomy reads of the torch classes derived from
        self.min_val, self.max_val = -1.0, 1.0  # hard_tanh's bounds
        if _is_channels_last_norm(layer):
            self.normalized_shape = (_feature_count(layer),)  # units on the last axis

    def forward(self, inputs: Any, output: Any) -> Any:
        """The Keras layer's output, unchanged (``inputs`` is there for the hooks)."""
        return output

    def extra_repr(self) -> str:
        return f"keras {self.layer.value.name!r}"


class _Opaque:
    """Holds the Keras layer without registering it as a child module."""

    def __init__(self, value: Any) -> None:
        self.value = value


def torch_tensor(variable: Any) -> torch.Tensor:
    """The torch tensor a Keras variable holds (its parameter, not an autocast copy)."""
    value = getattr(variable, "_value", None)
    return value if isinstance(value, torch.Tensor) else variable.value


def _unique(name: str, taken: set[str]) -> str:
    candidate, n = name, 1
    while candidate in taken:
        n += 1
        candidate = f"{name}_{n}"
    taken.add(candidate)
    return candidate


def _is_channels_last_norm(layer: Any) -> bool:
    axis = getattr(layer, "axis", None)
    return _norm_base(layer) is not None and axis in (-1, [-1], (-1,))


def _feature_count(layer: Any) -> int:
    variables = layer._trainable_variables or layer._non_trainable_variables
    return int(variables[0].shape[-1]) if variables else 0


def _norm_base(layer: Any) -> type[nn.Module] | None:
    import keras

    if isinstance(layer, keras.layers.BatchNormalization):
        return nn.modules.batchnorm._BatchNorm
    if isinstance(layer, keras.layers.LayerNormalization):
        return nn.LayerNorm
    return None


def _is_weight_layer(layer: Any) -> bool:
    import keras

    dense = isinstance(layer, (keras.layers.Dense, keras.layers.EinsumDense))
    conv = (
        hasattr(layer, "kernel_size")
        and hasattr(layer, "filters")
        and bool(layer._trainable_variables)
    )
    return dense or conv


def activation_name(layer: Any) -> str | None:
    """The name of the activation a Keras layer applies (``"relu"``), None for none or linear."""
    import keras

    if isinstance(layer, keras.layers.ReLU):
        return "leaky_relu" if float(layer.negative_slope or 0.0) else "relu"
    if isinstance(layer, keras.layers.LeakyReLU):
        return "leaky_relu"
    if isinstance(layer, keras.layers.ELU):
        return "elu"
    function = getattr(layer, "activation", None)
    name = getattr(function, "__name__", None)
    return name if name in _ACTIVATIONS else None


@functools.cache
def _mirror_class(type_name: str, bases: tuple[type[nn.Module], ...]) -> type[KerasLayerMirror]:
    return type(type_name, (KerasLayerMirror, *bases), {"__module__": __name__})


def mirror_of(layer: Any) -> KerasLayerMirror | None:
    """The mirror module of one Keras layer, or None when it has neither weights nor an activation."""
    activation = activation_name(layer)
    owns = bool(layer._trainable_variables or layer._non_trainable_variables)
    if not owns and activation is None:
        return None
    bases: list[type[nn.Module]] = []
    if _is_weight_layer(layer):
        bases.append(nn.Linear)
    norm = _norm_base(layer)
    if norm is not None:
        bases.append(norm)
    if activation is not None:
        bases.append(_ACTIVATIONS[activation])
    return _mirror_class(type(layer).__name__, tuple(bases))(layer)


def layer_name(layer: Any, model: Any) -> str:
    """A layer's Keras path relative to the model (``dense``, ``block/dense``), no ``.`` in it."""
    variables = [*layer._trainable_variables, *layer._non_trainable_variables]
    path = (
        variables[0].path.rpartition("/")[0]
        if variables
        else (getattr(layer, "path", None) or layer.name)
    )
    prefix = f"{model.name}/"
    if path.startswith(prefix):
        path = path[len(prefix) :]
    return path.replace(".", "_") or layer.name


def mirror_model(model: Any) -> tuple[nn.Module, list[tuple[Any, KerasLayerMirror]]]:
    """The module tree graddoctor records for a Keras model.

    Args:
        model: a built Keras model (torch backend).

    Returns:
        ``(root, pairs)``: a plain ``nn.Module`` whose children are the mirrors, named by
        Keras path, in the model's layer order; and each ``(keras layer, mirror)``.
    """
    root = nn.Module()
    pairs = []
    taken: set[str] = set()
    for layer in model._flatten_layers(include_self=False, recursive=True):
        mirror = mirror_of(layer)
        if mirror is None:
            continue
        name = _unique(layer_name(layer, model), taken)
        root.add_module(name, mirror)
        pairs.append((layer, mirror))
    return root, pairs


def forward_through(mirror: KerasLayerMirror, active: Callable[[], bool]) -> Callable[..., Any]:
    """A forward hook for the Keras layer: while ``active()``, its call passes through ``mirror``."""

    def hook(layer: Any, args: Any, output: Any) -> Any:
        if not active():
            return None
        return mirror(args, output)

    return hook


__all__ = ["KerasLayerMirror", "activation_name", "forward_through", "mirror_model", "torch_tensor"]
