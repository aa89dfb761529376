r"""Find where a NaN or Inf is born: replay one failing batch under hooks.

Checking every activation and gradient for NaN/Inf on every step costs a device sync per
tensor, so nothing is checked while training. When a step goes non-finite, the caller
replays that batch through :func:`locate_nonfinite`, which looks, in this order, at

1. **parameters and buffers** already non-finite (``direction="parameter"``);
2. the **input batch** (``direction="forward"``, ``module=""``, ``what="input"``);
3. the **forward** pass: the first module, in order of completion, whose output holds a
   NaN/Inf while all its inputs were finite. Children complete before their containers,
   so the module where it started is found, not a container passing it on;
4. the **loss** (``direction="loss"``, ``what="targets"`` when the targets hold the
   NaN/Inf, else ``"loss"``), when every module output was finite;
5. the **backward** pass, when forward and loss were finite: the first autograd node, in
   backward execution order, that returns a non-finite gradient from finite incoming
   gradients, reported as the module whose forward created that node
   (``what="grad_input"``, or ``"grad_<param>"`` when the gradient is a parameter's).

Design of the backward check. Each module's forward hook claims the autograd nodes its
call created (those reachable from its outputs with a sequence number above the one
taken in its pre-hook, not already claimed by a child), and a hook is put on each node.
A node hook sees exactly the gradient its op computes. ``register_full_backward_hook``
wraps the outputs in a view-making Function (in-place ops such as
``ReLU(inplace=True)`` then fail), and tensor hooks on a module's inputs see the sum over
every consumer of that tensor, which blames the sibling of a residual branch. Nodes made
by ``loss_fn`` are owned by the loss (``direction="loss"``, ``what="grad_input"``).

Float tensors whose only non-finite entries are ``-inf`` (additive attention masks, as
from ``nn.Transformer.generate_square_subsequent_mask``) do not count as non-finite
*inputs*; they still count as outputs. The replay runs in the model's current train/eval
mode and precision (wrap the call in ``torch.autocast`` to replay a mixed-precision
step), with anomaly detection off and no GradScaler; the RNG state, buffers (e.g.
BatchNorm running statistics) and ``.grad`` are as before the call, gradients being
taken with :func:`torch.autograd.grad`, which never writes ``.grad``. Single-threaded
models only (autograd sequence numbers are per thread).

A compiled model (``torch.compile``'s ``OptimizedModule``, or ``module.compile()``) is
replayed eagerly: its ``_orig_mod`` under ``torch.compiler.set_stance("force_eager")``,
with the hooks above and the plain model's module names.

The idea of replaying the failing batch under a detector is fairseq's ``NanDetector``
(Ott et al. 2019, "fairseq: A Fast, Extensible Toolkit for Sequence Modeling").
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ._nonfinite_events import DIRECTIONS, NonfiniteEvent, NonfiniteReport
from ._replay_hooks import Replay, next_sequence_nr, nonfinite_counts
from ._tensors import iter_tensors


def _call(model: nn.Module, inputs: Any) -> Any:
    if isinstance(inputs, (tuple, list)):
        return model(*inputs)
    if isinstance(inputs, dict):
        return model(**inputs)
    return model(inputs)


def eager_module(model: nn.Module) -> nn.Module:
    """The module inside ``torch.compile`` wrappers (``_orig_mod``), itself when not wrapped."""
    while type(model).__name__ == "OptimizedModule" and isinstance(
        getattr(model, "_orig_mod", None), nn.Module
    ):
        model = model._orig_mod
    return model


def _eager() -> Any:
    """A context running compiled functions eagerly (a no-op on a torch without ``set_stance``)."""
    set_stance = getattr(torch.compiler, "set_stance", None)
    return set_stance("force_eager") if set_stance is not None else contextlib.nullcontext()


def _callable_name(loss_fn: Callable) -> str:
    return (
        type(loss_fn).__name__
        if isinstance(loss_fn, nn.Module)
        else getattr(loss_fn, "__name__", type(loss_fn).__name__)
    )


def locate_nonfinite(
    model: nn.Module,
    inputs: Any,
    targets: Any,
    loss_fn: Callable[[Any, Any], torch.Tensor],
    *,
    max_events: int = 20,
) -> NonfiniteReport | None:
    r"""Replay one batch and name the parameter, module or loss where NaN/Inf first appears.

    Costs nothing until called; the model comes back unchanged (parameters, buffers,
    ``.grad``, train/eval mode, no hooks left, still picklable), also when it raises.
    See the module docstring for the order of the checks and what each field means.

    Args:
        model: the model that produced a non-finite loss or gradient.
        inputs: the batch: a tuple/list is called as ``model(*inputs)``, a dict as
            ``model(**inputs)``, anything else as ``model(inputs)``.
        targets: passed to ``loss_fn`` unchanged.
        loss_fn: ``(outputs, targets) -> scalar tensor``.
        max_events: how many non-finite events to keep in ``report.events``.

    Returns:
        A :class:`NonfiniteReport` naming the origin, or None when parameters, forward,
        loss and backward are all finite.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not callable(loss_fn):
        raise TypeError(
            f"loss_fn must be callable as loss_fn(outputs, targets), got {type(loss_fn).__name__}"
        )
    if isinstance(max_events, bool) or not isinstance(max_events, int) or max_events < 1:
        raise ValueError(f"max_events must be a positive int, got {max_events!r}")
    model = eager_module(model)
    loss_name = _callable_name(loss_fn)
    replay = Replay(model, loss_name, max_events)
    replay.check_parameters()
    if replay.origin is not None:
        return replay.report()
    replay.index += 1
    counts = nonfinite_counts(iter_tensors(inputs), masks_allowed=True)
    if sum(counts):
        replay.record("", type(model).__name__, "forward", "input", counts, True)
        return replay.report()

    saved_buffers = [
        (module, name, buffer, buffer.detach().clone())
        for module in replay.names
        for name, buffer in module.named_buffers(recurse=False)
    ]
    cuda_devices = sorted(
        {
            t.device.index or 0
            for t in itertools.chain(model.parameters(), model.buffers(), iter_tensors(inputs))
            if t.device.type == "cuda"
        }
    )
    try:
        with (
            torch.random.fork_rng(devices=cuda_devices),
            torch.enable_grad(),
            torch.autograd.set_detect_anomaly(False),
            _eager(),
        ):
            replay.install()
            outputs = _call(model, inputs)
            start = next_sequence_nr()
            loss = loss_fn(outputs, targets)
            if not isinstance(loss, torch.Tensor):
                raise TypeError(f"loss_fn must return a tensor, got {type(loss).__name__}")
            if loss.dim() != 0:
                raise ValueError(
                    f"loss_fn must return a scalar tensor, got shape {tuple(loss.shape)}; reduce it with .mean() or .sum()"
                )
            forward_finite = not replay.events
            replay.index += 1
            counts = nonfinite_counts([loss])
            if sum(counts):
                bad_targets = sum(nonfinite_counts(iter_tensors(targets))) > 0
                replay.record(
                    "",
                    loss_name,
                    "loss",
                    "targets" if bad_targets else "loss",
                    counts,
                    forward_finite,
                )
            elif forward_finite:
                replay.claim([loss], start, ("", loss_name, "loss"))
                replay.backward(loss, inputs)
    finally:
        replay.close()
        with torch.no_grad():
            for module, name, buffer, saved in saved_buffers:
                module._buffers[name] = buffer
                buffer.copy_(saved)
    return replay.report()


__all__ = [
    "DIRECTIONS",
    "NonfiniteEvent",
    "NonfiniteReport",
    "eager_module",
    "iter_tensors",
    "locate_nonfinite",
]
