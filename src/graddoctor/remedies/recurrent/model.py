"""Finding recurrent layers in a model, and the `SequenceModel` wrapper (recurrent core + head)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from graddoctor._module_types import is_recurrent

READOUTS = ("last", "all")


def find_recurrent_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Every recurrent module (``graddoctor._modules.is_recurrent``), with its name.

    ``nn.RNN/LSTM/GRU``, the RNN cells, graddoctor's Elman and leaky layers, and any
    module owning a ``weight_hh`` parameter.

    Args:
        model: any module (the model itself counts, under the name ``""``).

    Returns:
        ``[(name, module), ...]`` in ``named_modules`` order.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    return [(name, module) for name, module in model.named_modules() if is_recurrent(module)]


def no_recurrent_module_error(model: nn.Module, hint: str) -> ValueError:
    """The error a recurrent remedy raises on a model without recurrent layers."""
    return ValueError(
        f"no nn.RNN/LSTM/GRU or graddoctor recurrent module found in {type(model).__name__}: {hint}"
    )


def require_recurrent_modules(model: nn.Module, hint: str) -> list[tuple[str, nn.Module]]:
    """:func:`find_recurrent_modules`, raising when there is none."""
    found = find_recurrent_modules(model)
    if not found:
        raise no_recurrent_module_error(model, hint)
    return found


def detach_hidden(hidden: Any) -> Any:
    """Detach a hidden state: a tensor, or a (nested) tuple/list of them (LSTM's ``(h, c)``)."""
    if hidden is None:
        return None
    if isinstance(hidden, torch.Tensor):
        return hidden.detach()
    if isinstance(hidden, (tuple, list)):
        return type(hidden)(detach_hidden(part) for part in hidden)
    raise TypeError(
        f"a hidden state must be a tensor or a tuple of tensors, got {type(hidden).__name__}"
    )


def _output_size(rnn: nn.Module) -> int:
    if isinstance(rnn, nn.RNNBase):
        size = rnn.proj_size if getattr(rnn, "proj_size", 0) else rnn.hidden_size
        return size * (2 if rnn.bidirectional else 1)
    if hasattr(rnn, "hidden_size"):
        return int(rnn.hidden_size)
    raise ValueError(
        f"cannot tell the output size of {type(rnn).__name__}: pass head as an nn.Module, not an int"
    )


class SequenceModel(nn.Module):
    """A recurrent core followed by a head: ``head(rnn(x)[0])`` at the last step or every step.

    The core is anything called as ``rnn(x, hidden) -> (outputs, hidden)``: ``nn.RNN``,
    ``nn.LSTM`` (hidden is ``(h, c)``), ``nn.GRU``, :class:`ElmanRNN`, ``LeakyRNN``. The
    core can be swapped (:func:`swap_rnn_`) without touching the head.

    Args:
        rnn: the recurrent core, stored as ``self.rnn``.
        head: an ``nn.Module`` applied to the core's outputs, or an int ``n`` for
            ``nn.Linear(rnn_output_size, n)`` on the core's dtype and device.
        readout: ``"last"``: predict from the last time step's output (``[B, out]``);
            ``"all"``: predict at every step (``[B, T, out]``).
    """

    def __init__(self, rnn: nn.Module, head: nn.Module | int, readout: str = "last") -> None:
        super().__init__()
        if not isinstance(rnn, nn.Module):
            raise TypeError(
                f"rnn must be an nn.Module (nn.RNN, nn.LSTM, ElmanRNN...), got {type(rnn).__name__}"
            )
        if readout not in READOUTS:
            raise ValueError(f"readout must be one of {READOUTS}, got {readout!r}")
        if isinstance(head, int) and not isinstance(head, bool):
            if head < 1:
                raise ValueError(f"head as an int is the output size and must be >= 1, got {head}")
            reference = next(rnn.parameters(), None)
            factory = (
                {} if reference is None else {"dtype": reference.dtype, "device": reference.device}
            )
            head = nn.Linear(_output_size(rnn), head, **factory)
        if not isinstance(head, nn.Module):
            raise TypeError(
                f"head must be an nn.Module or an int output size, got {type(head).__name__}"
            )
        self.rnn = rnn
        self.head = head
        self.readout = readout

    @property
    def batch_first(self) -> bool:
        return bool(getattr(self.rnn, "batch_first", True))

    def extra_repr(self) -> str:
        return f"readout={self.readout!r}"

    def forward(self, inputs: torch.Tensor, hidden: Any = None, return_hidden: bool = False):
        """Predict from a sequence.

        Args:
            inputs: ``[B, T, I]`` when the core is ``batch_first``, else ``[T, B, I]``.
            hidden: the core's initial hidden state (``None``: zeros).
            return_hidden: also return the core's final hidden state.

        Returns:
            predictions (``[B, out]`` for ``"last"``, ``[B, T, out]`` / ``[T, B, out]`` for
            ``"all"``), or ``(predictions, hidden)`` with ``return_hidden``.
        """
        result = self.rnn(inputs, hidden)
        if not (isinstance(result, tuple) and len(result) == 2):
            raise TypeError(
                f"SequenceModel's core {type(self.rnn).__name__} must return (outputs, hidden) "
                "like nn.RNN"
            )
        outputs, new_hidden = result
        if self.readout == "last":
            time_dim = 1 if (self.batch_first and outputs.dim() == 3) else 0
            outputs = outputs.select(time_dim, outputs.shape[time_dim] - 1)
        predictions = self.head(outputs)
        return (predictions, new_hidden) if return_hidden else predictions
