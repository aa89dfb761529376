"""The hooks of a non-finite replay: module outputs, claimed autograd nodes, and the events seen.

See ``probes.nonfinite_replay`` for the order of the checks and why autograd node hooks.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from ._nonfinite_events import NonfiniteEvent, NonfiniteReport
from ._tensors import iter_tensors


def nonfinite_counts(
    tensors: Iterable[torch.Tensor | None], masks_allowed: bool = False
) -> tuple[int, int]:
    """Total (NaN count, Inf count) over floating tensors; -inf-only masks skipped if allowed."""
    nan_count = inf_count = 0
    for tensor in tensors:
        if tensor is None or not (tensor.is_floating_point() or tensor.is_complex()):
            continue
        tensor = tensor.detach()
        if bool(torch.isfinite(tensor).all()):
            continue
        nans, infs = int(torch.isnan(tensor).sum()), int(torch.isinf(tensor).sum())
        if (
            masks_allowed
            and nans == 0
            and not tensor.is_complex()
            and infs == int((tensor == -torch.inf).sum())
        ):
            continue
        nan_count, inf_count = nan_count + nans, inf_count + infs
    return nan_count, inf_count


def next_sequence_nr() -> int:
    """The autograd sequence number of a node made now; later nodes have larger ones."""
    with torch.enable_grad():
        return torch.zeros((), requires_grad=True).clone().grad_fn._sequence_nr()


class Replay:
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
        self.owners: dict[
            Any, tuple[str, str, str]
        ] = {}  # autograd node -> (module, type, direction)
        self.handles: list[Any] = []

    def record(
        self,
        module: str,
        module_type: str,
        direction: str,
        what: str,
        counts: tuple[int, int],
        is_origin: bool,
        op: str = "",
    ) -> None:
        event = NonfiniteEvent(
            module, module_type, direction, what, counts[0], counts[1], self.index, op
        )
        if len(self.events) < self.max_events:
            self.events.append(event)
        if is_origin and self.origin is None:
            self.origin = event

    def report(self) -> NonfiniteReport | None:
        origin = self.origin or (self.events[0] if self.events else None)
        if origin is None:
            return None
        return NonfiniteReport(
            origin.module,
            origin.module_type,
            origin.direction,
            origin.what,
            origin.nan_count,
            origin.inf_count,
            tuple(self.events),
            origin.op,
        )

    def check_parameters(self) -> None:
        for name, module in self.model.named_modules():
            named = itertools.chain(
                module.named_parameters(recurse=False), module.named_buffers(recurse=False)
            )
            for tensor_name, tensor in named:
                self.index += 1
                counts = nonfinite_counts([tensor])
                if sum(counts):
                    self.record(name, type(module).__name__, "parameter", tensor_name, counts, True)

    def install(self) -> None:
        for module in self.names:
            self.handles.append(module.register_forward_pre_hook(self._pre_hook, with_kwargs=True))
            self.handles.append(module.register_forward_hook(self._post_hook, with_kwargs=True))

    def _pre_hook(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        inputs_finite = sum(nonfinite_counts(iter_tensors((args, kwargs)), masks_allowed=True)) == 0
        self.pending.setdefault(module, []).append((inputs_finite, next_sequence_nr()))

    def _post_hook(self, module: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
        inputs_finite, start = self.pending[module].pop()
        self.index += 1
        name, module_type = self.names[module], type(module).__name__
        counts = nonfinite_counts(iter_tensors(output))
        if sum(counts):
            self.record(name, module_type, "forward", "output", counts, inputs_finite)
        self.claim(iter_tensors(output), start, (name, module_type, "backward"))

    def claim(
        self, tensors: Iterable[torch.Tensor], start: int, owner: tuple[str, str, str]
    ) -> None:
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
            if (
                next_node is None
                or hasattr(next_node, "variable")
                or len(next_node.next_functions) != 1
            ):
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
            per_edge = [nonfinite_counts([grad]) for grad in grad_inputs]
            bad = [i for i, counts in enumerate(per_edge) if sum(counts)]
            if not bad:
                return
            counts = (sum(per_edge[i][0] for i in bad), sum(per_edge[i][1] for i in bad))
            incoming_finite = sum(nonfinite_counts(grad_outputs)) == 0
            what = labels[bad[0]] if bad[0] < len(labels) else "grad_input"
            self.record(module, module_type, direction, what, counts, incoming_finite, op)

        return hook

    def backward(self, loss: torch.Tensor, inputs: Any) -> None:
        leaves = {
            id(t): t
            for t in itertools.chain(self.model.parameters(), iter_tensors(inputs))
            if t.requires_grad
        }
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


__all__ = ["Replay", "next_sequence_nr", "nonfinite_counts"]
