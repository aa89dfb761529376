"""Replacing plain recurrent layers by gated ones (LSTM / GRU) inside any model."""

from __future__ import annotations

from torch import nn

from graddoctor.remedies._recurrent_cells import RecurrentCore
from graddoctor.remedies._recurrent_model import require_recurrent_modules

_TARGETS = {"lstm": nn.LSTM, "gru": nn.GRU}


def _is_plain_rnn(module: nn.Module) -> bool:
    return (isinstance(module, nn.RNNBase) and module.mode in ("RNN_TANH", "RNN_RELU")) or isinstance(
        module, RecurrentCore
    )


def _gated_replacement(module: nn.Module, to: str) -> nn.Module:
    reference = module.weight_hh_l0 if isinstance(module, nn.RNNBase) else module.weight_hh
    bias = module.bias if isinstance(module, nn.RNNBase) else True
    return _TARGETS[to](
        input_size=module.input_size,
        hidden_size=module.hidden_size,
        num_layers=module.num_layers,
        bias=bool(bias),
        batch_first=module.batch_first,
        dropout=float(module.dropout),
        bidirectional=module.bidirectional,
        device=reference.device,
        dtype=reference.dtype,
    )


def swap_rnn_(model: nn.Module, to: str = "lstm") -> list[str]:
    """Replace every plain RNN inside ``model`` by an ``nn.LSTM`` or ``nn.GRU``, in place.

    Swaps ``nn.RNN`` (tanh or relu), :class:`ElmanRNN` and ``LeakyRNN`` for a freshly
    initialised gated layer with the same ``input_size``, ``hidden_size``, ``num_layers``,
    ``bias``, ``batch_first``, ``dropout``, ``bidirectional``, dtype and device. The
    outputs keep their shape; the hidden state becomes ``(h, c)`` for an LSTM, which
    :class:`SequenceModel` and :func:`tbptt` handle. Gating gives the additive memory path
    that keeps gradients from vanishing (Hochreiter & Schmidhuber 1997; Cho et al. 2014;
    graddoctor seed 001). Layers already gated are left alone, so a second call returns ``[]``.

    Args:
        model: the model to change (not itself the RNN: wrap it, e.g. in
            :class:`SequenceModel`).
        to: ``"lstm"`` or ``"gru"``.

    Returns:
        the names (``named_modules``) of the swapped layers.
    """
    if to not in _TARGETS:
        raise ValueError(f"swap_rnn_ to must be one of {tuple(_TARGETS)}, got {to!r}")
    found = require_recurrent_modules(model, "swap_rnn_ replaces recurrent layers and has nothing to swap")
    swapped = []
    for name, module in found:
        if not _is_plain_rnn(module):
            continue
        if name == "":
            raise ValueError(
                f"swap_rnn_ cannot replace the model itself ({type(model).__name__}) in place: wrap it "
                "in a container, e.g. SequenceModel(rnn, head), and swap inside that"
            )
        parent_name, _, child_name = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        replacement = _gated_replacement(module, to)
        replacement.train(module.training)
        setattr(parent, child_name, replacement)
        swapped.append(name)
    return swapped
