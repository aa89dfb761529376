r"""Layer-sequential unit-variance (LSUV) initialisation, Mishkin & Matas (2016)."""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from graddoctor.remedies.init.model import INIT_LAYER_TYPES
from graddoctor.remedies.init.orthogonal import orthogonal_


@dataclass(frozen=True)
class LSUVLayer:
    """Outcome of LSUV for one layer.

    Attributes:
        variance: the layer's output variance on the batch after the last rescaling.
        iterations: how many times the weight was divided by the output standard deviation.
        converged: whether :math:`|\\text{variance} - 1| < \\text{tol}` was reached.
    """

    variance: float
    iterations: int
    converged: bool


class _StopForward(Exception):
    """Raised by the measuring hook to skip the rest of the forward pass."""


def _run_with_hooks(model: nn.Module, batch: Any, hooks: dict[nn.Module, Callable]) -> None:
    handles = [module.register_forward_hook(hook) for module, hook in hooks.items()]
    try:
        model(batch)
    except _StopForward:
        pass
    finally:
        for handle in handles:
            handle.remove()


def _forward_order(
    model: nn.Module, layers: list[tuple[str, nn.Module]], batch: Any
) -> list[tuple[str, nn.Module]]:
    order: list[tuple[str, nn.Module]] = []
    seen: set[int] = set()

    def recorder(name: str) -> Callable:
        def hook(module: nn.Module, inputs: Any, output: Any) -> None:
            if id(module) not in seen:
                seen.add(id(module))
                order.append((name, module))

        return hook

    _run_with_hooks(model, batch, {module: recorder(name) for name, module in layers})
    return order


def _output_variance(model: nn.Module, layer: nn.Module, batch: Any) -> float:
    measured: list[float] = []

    def hook(module: nn.Module, inputs: Any, output: torch.Tensor) -> None:
        # the layer's first call only; the rest of the forward pass is not needed
        measured.append(output.detach().double().var(correction=0).item())
        raise _StopForward

    _run_with_hooks(model, batch, {layer: hook})
    if not measured:
        raise RuntimeError(
            "lsuv_: a layer reached on the first forward pass was skipped on a later one"
        )
    return measured[0]


def lsuv_(
    model: nn.Module,
    batch: Any,
    tol: float = 0.1,
    max_iter: int = 10,
    generator: torch.Generator | None = None,
) -> dict[str, LSUVLayer]:
    r"""Orthonormal init, then rescale each layer until its output has unit variance.

    Mishkin & Matas (2016), "All you need is a good init". Every Linear/ConvNd weight is
    first filled with an orthonormal matrix (``orthogonal_``) and its bias zeroed; then,
    layer by layer in the order the forward pass reaches them, the batch is run and

    .. math::
        W_L \leftarrow W_L / \sqrt{\operatorname{Var}[y_L]}
        \quad \text{until} \quad |\operatorname{Var}[y_L] - 1| < \text{tol}
        \text{ or } \text{max\_iter} \text{ rescalings,}

    where :math:`y_L` is the layer's output (before its activation). The passes run under
    ``torch.no_grad`` with forward hooks that are removed afterwards, also on error; buffers
    (BatchNorm running statistics) are restored, so only Linear/ConvNd weights and biases
    change. Layers the forward pass never reaches keep their orthonormal init and are not
    reported. The model's train/eval mode is used as it is.

    Args:
        model: the network; its Linear/ConvNd layers are initialised in place.
        batch: the inputs, called as ``model(batch)`` (a batch of a few hundred samples).
        tol: tolerance on the output variance.
        max_iter: maximum number of rescalings per layer.
        generator: optional ``torch.Generator`` for the orthonormal pre-init.

    Returns:
        ``{layer name: LSUVLayer(variance, iterations, converged)}`` in forward order.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"lsuv_ expects a torch.nn.Module, got {type(model).__name__}")
    if not (isinstance(tol, numbers.Real) and tol > 0):
        raise ValueError(f"tol must be a positive number, got {tol!r}")
    if not (isinstance(max_iter, numbers.Integral) and max_iter >= 1):
        raise ValueError(f"max_iter must be an integer >= 1, got {max_iter!r}")
    layers = [(name, m) for name, m in model.named_modules() if isinstance(m, INIT_LAYER_TYPES)]
    if not layers:
        raise ValueError(
            "lsuv_ found no Linear or ConvNd layer in the model: nothing to initialise"
        )
    saved_buffers = [(buffer, buffer.detach().clone()) for buffer in model.buffers()]
    report: dict[str, LSUVLayer] = {}
    try:
        with torch.no_grad():
            for _, layer in layers:
                orthogonal_(layer.weight, generator=generator)
                if layer.bias is not None:
                    layer.bias.zero_()
            for name, layer in _forward_order(model, layers, batch):
                variance = _output_variance(model, layer, batch)
                iterations = 0
                while abs(variance - 1.0) >= tol and iterations < max_iter:
                    if not (math.isfinite(variance) and variance > 0):
                        break  # dead or diverging layer: rescaling cannot fix it
                    layer.weight.div_(math.sqrt(variance))
                    iterations += 1
                    variance = _output_variance(model, layer, batch)
                report[name] = LSUVLayer(variance, iterations, abs(variance - 1.0) < tol)
    finally:
        with torch.no_grad():
            for buffer, saved in saved_buffers:
                buffer.copy_(saved)
    return report
