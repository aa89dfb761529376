"""Which model an optimizer trains, and the last batch it saw (for ``graddoctor run``).

A *root* module is one called while no other module's forward is running: the model
the training loop calls, or its loss module. :class:`RootTracker` follows them with
global module hooks and keeps, per root, the inputs of its last call (detached
references, not copies) and the shape of its first output tensor; for loss modules
(``nn.modules.loss._Loss``) it keeps the last call's target. Inside a region that
``torch.compile`` traces the hooks do nothing (dynamo traces them as no-ops: no graph
break, no guard): a compiled model is seen as the root its wrapper is called as.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn.modules import module as module_hooks
from torch.nn.modules.loss import _Loss

from ..probes.nonfinite_replay import iter_tensors


def detached(obj: Any) -> Any:
    """``obj`` with every tensor detached (tuples, lists and dicts rebuilt; no copy of data)."""
    if isinstance(obj, torch.Tensor):
        return obj.detach()
    if isinstance(obj, (tuple, list)):
        return type(obj)(detached(item) for item in obj) if type(obj) in (tuple, list) else obj
    if isinstance(obj, dict) and type(obj) is dict:
        return {key: detached(value) for key, value in obj.items()}
    return obj


def _first_shape(obj: Any) -> tuple[int, ...] | None:
    first = next(iter_tensors(obj), None)
    return None if first is None else tuple(first.shape)


@dataclass
class Call:
    """The last call of a root module: detached inputs, output shape and call order."""

    args: tuple
    kwargs: dict
    output_shape: tuple[int, ...] | None
    order: int


@dataclass
class LossCall:
    """The last call of a root loss module: the module, its target, its input shape, order and output."""

    module: nn.Module
    target: Any
    input_shape: tuple[int, ...] | None
    order: int
    output: torch.Tensor | None


def _compiling() -> bool:
    is_compiling = getattr(torch.compiler, "is_compiling", None)
    return bool(is_compiling()) if is_compiling is not None else False


class RootTracker:
    """Global forward hooks that record root modules, their last inputs and the last loss call.

    Args:
        on_root_call: called with each root module as its forward starts.
    """

    def __init__(self, on_root_call: Callable[[nn.Module], None] | None = None) -> None:
        self.on_root_call = on_root_call
        self.depth = 0
        self.order = 0
        self.paused = False
        self.calls: weakref.WeakKeyDictionary[nn.Module, Call] = weakref.WeakKeyDictionary()
        self.last_loss: LossCall | None = None
        self._handles: list[Any] = []

    def install(self) -> None:
        self._handles.append(module_hooks.register_module_forward_pre_hook(self._pre))
        self._handles.append(
            module_hooks.register_module_forward_hook(
                self._post, with_kwargs=True, always_call=True
            )
        )

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
            # torch's handle forgets the with_kwargs flag of a global forward hook (torch 2.x)
            getattr(module_hooks, "_global_forward_hooks_with_kwargs", {}).pop(handle.id, None)
        self._handles.clear()

    def _pre(self, module: nn.Module, args: tuple) -> None:
        if self.paused or _compiling():
            return
        self.depth += 1
        if self.depth == 1 and self.on_root_call is not None:
            self.on_root_call(module)

    def _post(self, module: nn.Module, args: tuple, *rest: Any) -> None:
        # (kwargs, output) normally; (output,) = (None,) when the forward raised
        if self.paused or _compiling():
            return
        kwargs, output = rest if len(rest) == 2 else ({}, None)
        self.depth = max(self.depth - 1, 0)
        if self.depth:
            return
        self.order += 1
        if isinstance(module, _Loss):
            target = args[1] if len(args) > 1 else kwargs.get("target")
            first = args[0] if args else kwargs.get("input")
            loss = (
                output.detach()
                if isinstance(output, torch.Tensor) and output.numel() == 1
                else None
            )
            self.last_loss = LossCall(
                module, detached(target), _first_shape(first), self.order, loss
            )
        else:
            self.calls[module] = Call(
                detached(tuple(args)), detached(dict(kwargs)), _first_shape(output), self.order
            )

    def roots(self) -> list[nn.Module]:
        """Root modules with parameters that are still alive, in order of first call."""
        return [
            module
            for module in list(self.calls.keys())
            if next(module.parameters(), None) is not None
        ]


def optimizer_parameters(optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    """The optimizer's parameters, each once, in param-group order."""
    seen: dict[int, torch.Tensor] = {}
    for group in optimizer.param_groups:
        for param in group["params"]:
            seen.setdefault(id(param), param)
    return list(seen.values())


@dataclass
class Watched:
    """One optimizer (None: ``backward()`` as the step) under a Monitor, and what was done about its NaNs."""

    optimizer: torch.optim.Optimizer | None
    monitor: Any  # the Monitor
    model: nn.Module
    is_root: bool
    params: list[torch.Tensor]
    handle: Any = None
    logged_group: int = 0
    step_loss: torch.Tensor | None = None
    replays: int = 0
    located: bool = False


class ParameterContainer(nn.Module):
    """Holds the modules (and loose parameters) an optimizer trains when no single root does."""


def covering_root(parameters: list[torch.Tensor], roots: list[nn.Module]) -> nn.Module | None:
    """The smallest root module (first called among equals) owning every trainable tensor of ``parameters``."""
    wanted = {id(p) for p in parameters if p.requires_grad}
    owned = [(root, {id(p) for p in root.parameters()}) for root in roots]
    covering = [(len(ids), i, root) for i, (root, ids) in enumerate(owned) if wanted <= ids]
    return min(covering, key=lambda item: item[:2])[2] if covering else None


def model_for(
    optimizer: torch.optim.Optimizer | None,
    roots: list[nn.Module],
    parameters: list[torch.Tensor] | None = None,
) -> tuple[nn.Module, bool]:
    r"""The module whose parameters cover the optimizer's trainable parameters.

    The smallest root that covers them all is returned as is. Otherwise a
    :class:`ParameterContainer` holds every root that owns some of them (named by class,
    ``"regressor"``, ``"regressor_1"``...) and the remaining ``nn.Parameter`` objects as
    ``param_<group>_<index>``.

    Args:
        optimizer: the optimizer about to step (None: ``parameters`` alone, one group).
        roots: candidate root modules, in order of first call.
        parameters: the parameters to cover (default: the optimizer's).

    Returns:
        ``(model, is_root)``: ``is_root`` is False for a synthetic container.

    Raises:
        ValueError: the optimizer has no trainable ``nn.Parameter`` that a module can hold.
    """
    groups = (
        [group["params"] for group in optimizer.param_groups]
        if optimizer is not None
        else [parameters]
    )
    parameters = optimizer_parameters(optimizer) if parameters is None else parameters
    root = covering_root(parameters, roots)
    if root is not None:
        return root, True
    wanted = {id(p) for p in parameters if p.requires_grad}
    owned = [(root, {id(p) for p in root.parameters()}) for root in roots]
    container = ParameterContainer()
    covered: set[int] = set()
    counts: dict[str, int] = {}
    for root, ids in owned:
        if ids & wanted and not (ids & wanted) <= covered:
            base = type(root).__name__.lower()
            name = base if base not in counts else f"{base}_{counts[base]}"
            counts[base] = counts.get(base, 0) + 1
            container.add_module(name, root)
            covered |= ids
    for g, group in enumerate(groups):
        for i, param in enumerate(group):
            if id(param) in wanted and id(param) not in covered and isinstance(param, nn.Parameter):
                container.register_parameter(f"param_{g}_{i}", param)
                covered.add(id(param))
    if not any(p.requires_grad for p in container.parameters()):
        raise ValueError(
            f"{type(optimizer).__name__ if optimizer is not None else 'backward()'} trains no nn.Parameter that a module could hold "
            "(plain tensors with requires_grad): wrap them in nn.Parameter to monitor them"
        )
    return container, False


def replay_batch(model: nn.Module, tracker: RootTracker) -> tuple[Any, Any, Any] | None:
    r"""``(inputs, targets, loss_fn)`` that replay the root's last call for ``locate_nonfinite``.

    The loss is the last root loss module called after the model, when its input has the
    shape of the model's output (the usual ``loss_fn(model(x), y)``). Otherwise the replay
    is forward-only with the loss :math:`\sum_k \sum_i o_{k,i}` over the output tensors
    :math:`o_k` (its backward pass then checks the gradients of that surrogate, not of
    the script's loss). None when the model was never called or took keyword arguments
    together with positional ones (``locate_nonfinite`` calls ``model(*args)`` or
    ``model(**kwargs)``).
    """
    call = tracker.calls.get(model)
    if call is None or (call.args and call.kwargs):
        return None
    inputs = call.kwargs if call.kwargs else tuple(call.args)
    loss = tracker.last_loss
    if loss is not None and loss.order > call.order and loss.input_shape == call.output_shape:
        return inputs, loss.target, loss.module
    return inputs, None, sum_of_outputs


def sum_of_outputs(outputs: Any, targets: Any) -> torch.Tensor:
    r"""Surrogate loss of a forward-only replay: :math:`\sum_k \sum_i o_{k,i}` (targets ignored)."""
    floats = [t.float().sum() for t in iter_tensors(outputs) if t.is_floating_point()]
    if not floats:
        raise ValueError("the model returned no floating-point tensor to replay")
    return torch.stack(floats).sum()
