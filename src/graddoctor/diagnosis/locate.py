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

The idea of replaying the failing batch under a detector is fairseq's ``NanDetector``
(Ott et al. 2019, "fairseq: A Fast, Extensible Toolkit for Sequence Modeling").
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

DIRECTIONS = ("parameter", "forward", "loss", "backward")


@dataclass(frozen=True)
class NonfiniteEvent:
    r"""One non-finite tensor seen during the replay.

    ``index`` is the position of the check in execution order (parameters, then module
    forward completions, the loss, then autograd nodes in backward order); ``op`` names
    the autograd node for backward events (e.g. ``"SqrtBackward0"``), else ``""``.
    """

    module: str
    module_type: str
    direction: str
    what: str
    nan_count: int
    inf_count: int
    index: int
    op: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The event as a JSON-ready dict."""
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class NonfiniteReport:
    r"""Where NaN/Inf started, and every non-finite event seen (up to ``max_events``).

    ``module`` is the dotted name from ``model.named_modules()`` (``""`` for the model
    itself and for the loss), ``direction`` one of :data:`DIRECTIONS`.
    """

    module: str
    module_type: str
    direction: str
    what: str
    nan_count: int
    inf_count: int
    events: tuple[NonfiniteEvent, ...]
    op: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The report as a JSON-ready dict (events as a list of dicts)."""
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        fields["events"] = [event.to_dict() for event in self.events]
        return fields


def iter_tensors(obj: Any) -> Iterator[torch.Tensor]:
    """Every tensor inside ``obj``, looking into tuples, lists and dict values."""
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, (tuple, list)):
        for item in obj:
            yield from iter_tensors(item)
    elif isinstance(obj, dict):
        for item in obj.values():
            yield from iter_tensors(item)


def _nonfinite_counts(tensors: Iterable[torch.Tensor | None], masks_allowed: bool = False) -> tuple[int, int]:
    """Total (NaN count, Inf count) over floating tensors; -inf-only masks skipped if allowed."""
    nan_count = inf_count = 0
    for tensor in tensors:
        if tensor is None or not (tensor.is_floating_point() or tensor.is_complex()):
            continue
        tensor = tensor.detach()
        if bool(torch.isfinite(tensor).all()):
            continue
        nans, infs = int(torch.isnan(tensor).sum()), int(torch.isinf(tensor).sum())
        if masks_allowed and nans == 0 and not tensor.is_complex() and infs == int((tensor == -torch.inf).sum()):
            continue
        nan_count, inf_count = nan_count + nans, inf_count + infs
    return nan_count, inf_count


def _next_sequence_nr() -> int:
    """The autograd sequence number of a node made now; later nodes have larger ones."""
    with torch.enable_grad():
        return torch.zeros((), requires_grad=True).clone().grad_fn._sequence_nr()


def _call(model: nn.Module, inputs: Any) -> Any:
    if isinstance(inputs, (tuple, list)):
        return model(*inputs)
    if isinstance(inputs, dict):
        return model(**inputs)
    return model(inputs)


class _Replay:
    """Hooks, claimed autograd nodes and the events of one replay."""

    def __init__(self, model: nn.Module, loss_name: str, max_events: int) -> None:
        self.model, self.loss_name, self.max_events = model, loss_name, max_events
        self.names = {module: name for name, module in model.named_modules()}
        self.param_owners = {
            id(param): (name, param_name)
            for name, module in model.named_modules()
            for param_name, param in module.named_parameters(recurse=False)
        }
        self.events: list[NonfiniteEvent] = []
        self.origin: NonfiniteEvent | None = None
        self.index = 0
        self.pending: dict[nn.Module, list[tuple[bool, int]]] = {}
        self.owners: dict[Any, tuple[str, str, str]] = {}  # autograd node -> (module, type, direction)
        self.handles: list[Any] = []

    def record(self, module: str, module_type: str, direction: str, what: str,
               counts: tuple[int, int], is_origin: bool, op: str = "") -> None:
        event = NonfiniteEvent(module, module_type, direction, what, counts[0], counts[1], self.index, op)
        if len(self.events) < self.max_events:
            self.events.append(event)
        if is_origin and self.origin is None:
            self.origin = event

    def report(self) -> NonfiniteReport | None:
        origin = self.origin or (self.events[0] if self.events else None)
        if origin is None:
            return None
        return NonfiniteReport(origin.module, origin.module_type, origin.direction, origin.what,
                               origin.nan_count, origin.inf_count, tuple(self.events), origin.op)

    def check_parameters(self) -> None:
        for name, module in self.model.named_modules():
            named = itertools.chain(module.named_parameters(recurse=False), module.named_buffers(recurse=False))
            for tensor_name, tensor in named:
                self.index += 1
                counts = _nonfinite_counts([tensor])
                if sum(counts):
                    self.record(name, type(module).__name__, "parameter", tensor_name, counts, True)

    def install(self) -> None:
        for module in self.names:
            self.handles.append(module.register_forward_pre_hook(self._pre_hook, with_kwargs=True))
            self.handles.append(module.register_forward_hook(self._post_hook, with_kwargs=True))

    def _pre_hook(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        inputs_finite = sum(_nonfinite_counts(iter_tensors((args, kwargs)), masks_allowed=True)) == 0
        self.pending.setdefault(module, []).append((inputs_finite, _next_sequence_nr()))

    def _post_hook(self, module: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
        inputs_finite, start = self.pending[module].pop()
        self.index += 1
        name, module_type = self.names[module], type(module).__name__
        counts = _nonfinite_counts(iter_tensors(output))
        if sum(counts):
            self.record(name, module_type, "forward", "output", counts, inputs_finite)
        self.claim(iter_tensors(output), start, (name, module_type, "backward"))

    def claim(self, tensors: Iterable[torch.Tensor], start: int, owner: tuple[str, str, str]) -> None:
        """Own the unclaimed autograd nodes behind ``tensors`` made after sequence ``start``."""
        stack = [tensor.grad_fn for tensor in tensors if tensor.grad_fn is not None]
        seen = set()
        while stack:
            node = stack.pop()
            if node is None or node in seen:
                continue
            seen.add(node)
            if hasattr(node, "variable") or node._sequence_nr() < start:  # a leaf, or made before
                continue
            self.owners.setdefault(node, owner)
            stack.extend(next_node for next_node, _ in node.next_functions)

    def _edge_label(self, next_node: Any, module: str) -> str:
        """``grad_<param>`` when the edge leads to a parameter (through single-input nodes
        such as the transpose in ``Linear``), else ``grad_input``."""
        for _ in range(8):
            if next_node is None or hasattr(next_node, "variable") or len(next_node.next_functions) != 1:
                break
            next_node = next_node.next_functions[0][0]
        owner = self.param_owners.get(id(getattr(next_node, "variable", None)))
        if owner is None:
            return "grad_input"
        return f"grad_{owner[1]}" if owner[0] == module else f"grad_{'.'.join(filter(None, owner))}"

    def _node_hook(self, node: Any, owner: tuple[str, str, str]) -> Callable:
        module, module_type, direction = owner
        labels = [self._edge_label(next_node, module) for next_node, _ in node.next_functions]
        op = node.name()

        def hook(grad_inputs: tuple, grad_outputs: tuple) -> None:
            self.index += 1
            per_edge = [_nonfinite_counts([grad]) for grad in grad_inputs]
            bad = [i for i, counts in enumerate(per_edge) if sum(counts)]
            if not bad:
                return
            counts = (sum(per_edge[i][0] for i in bad), sum(per_edge[i][1] for i in bad))
            incoming_finite = sum(_nonfinite_counts(grad_outputs)) == 0
            what = labels[bad[0]] if bad[0] < len(labels) else "grad_input"
            self.record(module, module_type, direction, what, counts, incoming_finite, op)

        return hook

    def backward(self, loss: torch.Tensor, inputs: Any) -> None:
        leaves = {id(t): t for t in itertools.chain(self.model.parameters(), iter_tensors(inputs)) if t.requires_grad}
        if not loss.requires_grad or not leaves:
            return
        for node, owner in self.owners.items():
            self.handles.append(node.register_hook(self._node_hook(node, owner)))
        torch.autograd.grad(loss, list(leaves.values()), allow_unused=True)

    def close(self) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles.clear()
        self.owners.clear()
        self.pending.clear()


def _callable_name(loss_fn: Callable) -> str:
    return type(loss_fn).__name__ if isinstance(loss_fn, nn.Module) else getattr(loss_fn, "__name__", type(loss_fn).__name__)


def locate_nonfinite(
    model: nn.Module, inputs: Any, targets: Any, loss_fn: Callable[[Any, Any], torch.Tensor], *, max_events: int = 20
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
        raise TypeError(f"loss_fn must be callable as loss_fn(outputs, targets), got {type(loss_fn).__name__}")
    if isinstance(max_events, bool) or not isinstance(max_events, int) or max_events < 1:
        raise ValueError(f"max_events must be a positive int, got {max_events!r}")
    loss_name = _callable_name(loss_fn)
    replay = _Replay(model, loss_name, max_events)
    replay.check_parameters()
    if replay.origin is not None:
        return replay.report()
    replay.index += 1
    counts = _nonfinite_counts(iter_tensors(inputs), masks_allowed=True)
    if sum(counts):
        replay.record("", type(model).__name__, "forward", "input", counts, True)
        return replay.report()

    saved_buffers = [
        (module, name, buffer, buffer.detach().clone())
        for module in replay.names
        for name, buffer in module.named_buffers(recurse=False)
    ]
    cuda_devices = sorted({
        t.device.index or 0
        for t in itertools.chain(model.parameters(), model.buffers(), iter_tensors(inputs))
        if t.device.type == "cuda"
    })
    try:
        with torch.random.fork_rng(devices=cuda_devices), torch.enable_grad(), torch.autograd.set_detect_anomaly(False):
            replay.install()
            outputs = _call(model, inputs)
            start = _next_sequence_nr()
            loss = loss_fn(outputs, targets)
            if not isinstance(loss, torch.Tensor):
                raise TypeError(f"loss_fn must return a tensor, got {type(loss).__name__}")
            if loss.dim() != 0:
                raise ValueError(
                    f"loss_fn must return a scalar tensor, got shape {tuple(loss.shape)}; reduce it with .mean() or .sum()"
                )
            forward_finite = not replay.events
            replay.index += 1
            counts = _nonfinite_counts([loss])
            if sum(counts):
                bad_targets = sum(_nonfinite_counts(iter_tensors(targets))) > 0
                replay.record("", loss_name, "loss", "targets" if bad_targets else "loss", counts, forward_finite)
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
