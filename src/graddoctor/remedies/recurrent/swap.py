"""Replacing recurrent layers inside any model: plain RNNs by gated ones, ``nn.RNN`` by Elman cores."""

from __future__ import annotations

import math
import numbers
from typing import Any

import torch
from torch import nn

from graddoctor.remedies._tree import replace_module_
from graddoctor.remedies.recurrent.cells import RecurrentCore
from graddoctor.remedies.recurrent.model import require_recurrent_modules

# the gated layers swap_rnn_(to=...) puts in
GATED_LAYERS = {"lstm": nn.LSTM, "gru": nn.GRU}
# which block of the stacked gate biases keeps the memory: LSTM (i, f, g, o) -> the forget
# gate f; GRU (r, z, n) -> the update gate z, since h' = (1 - z) n + z h
_MEMORY_GATE = 1


def is_plain_rnn(module: nn.Module) -> bool:
    """An ungated recurrent layer: ``nn.RNN`` (tanh or relu), :class:`ElmanRNN` or ``LeakyRNN``."""
    return (
        isinstance(module, nn.RNNBase) and module.mode in ("RNN_TANH", "RNN_RELU")
    ) or isinstance(module, RecurrentCore)


def is_elman_rnn(module: nn.Module) -> bool:
    """A single-layer, unidirectional tanh/relu ``nn.RNN``: the same function as an ElmanRNN."""
    return (
        isinstance(module, nn.RNN)
        and module.mode in ("RNN_TANH", "RNN_RELU")
        and module.num_layers == 1
        and not module.bidirectional
    )


def core_from(module: nn.Module, core_type: type[RecurrentCore], **extra: Any) -> RecurrentCore:
    r"""A graddoctor recurrent core with the weights of a one-layer ``nn.RNN`` or core.

    ``nn.RNN``'s two biases are summed into the core's one: :math:`b = b_{ih} + b_{hh}`
    (zero when the RNN has none). Sizes, nonlinearity, ``batch_first``, dtype, device,
    ``requires_grad`` flags and train/eval mode are kept.

    Args:
        module: a one-layer unidirectional ``nn.RNN`` (see :func:`is_elman_rnn`) or a core.
        core_type: :class:`ElmanRNN` or ``LeakyRNN``.
        **extra: further arguments of ``core_type`` (``leak_range=``).

    Returns:
        the new core (``module`` is not changed).
    """
    if isinstance(module, nn.RNN):
        weight_ih, weight_hh = module.weight_ih_l0, module.weight_hh_l0
        bias = (
            module.bias_ih_l0 + module.bias_hh_l0
            if module.bias
            else torch.zeros_like(weight_hh[:, 0])
        )
    else:
        weight_ih, weight_hh, bias = module.weight_ih, module.weight_hh, module.bias
    core = core_type(
        module.input_size, module.hidden_size, nonlinearity=module.nonlinearity,
        batch_first=module.batch_first, device=weight_hh.device, dtype=weight_hh.dtype, **extra,
    )  # fmt: skip
    with torch.no_grad():
        for target, source in (
            (core.weight_ih, weight_ih),
            (core.weight_hh, weight_hh),
            (core.bias, bias),
        ):
            target.copy_(source)
    core.weight_ih.requires_grad_(weight_ih.requires_grad)
    core.weight_hh.requires_grad_(weight_hh.requires_grad)
    core.train(module.training)
    return core


def _gated_replacement(module: nn.Module, to: str) -> nn.Module:
    reference = module.weight_hh_l0 if isinstance(module, nn.RNNBase) else module.weight_hh
    bias = module.bias if isinstance(module, nn.RNNBase) else True
    return GATED_LAYERS[to](
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


def _finite_bias(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"forget_bias must be a finite number, got {value!r}")
    return float(value)


def set_forget_bias_(layer: nn.RNNBase, value: float) -> None:
    r"""Start a gated layer's memory gate at bias ``value``, in place, in every layer and direction.

    The LSTM's forget gate :math:`f` (the GRU's update gate :math:`z`) gets
    :math:`b_{ih} = \text{value}`, :math:`b_{hh} = 0`; at zero input and state it keeps
    the fraction :math:`\sigma(\text{value})` of the memory per step, a time constant of

    .. math:: \tau = \frac{1}{1 - \sigma(b)} = 1 + e^{b} \text{ steps},

    about 2 for PyTorch's default :math:`b \approx 0`, 3.7 for the :math:`b = 1` of
    Jozefowicz, Zaremba & Sutskever (2015) and 21 for :math:`b = 3`. Tallec & Ollivier
    (2018, "Can recurrent neural networks warp time?") match it to the range of the
    dependencies to learn. A layer without biases is left alone.

    Args:
        layer: an ``nn.LSTM`` or ``nn.GRU``.
        value: the bias, a finite number.
    """
    value = _finite_bias(value)
    with torch.no_grad():
        for name, parameter in layer.named_parameters():
            if name.startswith(("bias_ih_l", "bias_hh_l")):
                block = parameter.chunk(len(parameter) // layer.hidden_size)[_MEMORY_GATE]
                block.fill_(value if name.startswith("bias_ih_l") else 0.0)


def swap_rnn_(model: nn.Module, to: str = "lstm", forget_bias: float | None = None) -> list[str]:
    """Replace every plain RNN inside ``model`` by an ``nn.LSTM`` or ``nn.GRU``, in place.

    Swaps ``nn.RNN`` (tanh or relu), :class:`ElmanRNN` and ``LeakyRNN`` for a freshly
    initialised gated layer with the same ``input_size``, ``hidden_size``, ``num_layers``,
    ``bias``, ``batch_first``, ``dropout``, ``bidirectional``, dtype and device. The
    outputs keep their shape; the hidden state becomes ``(h, c)`` for an LSTM, which
    :class:`SequenceModel` and :func:`tbptt` handle. Gating gives the additive memory path
    that keeps gradients from vanishing (Hochreiter & Schmidhuber 1997; Cho et al. 2014;
    Jefkine 2018). Layers already gated are left alone, so a second call returns ``[]``.

    Args:
        model: the model to change (not itself the RNN: wrap it, e.g. in
            :class:`SequenceModel`).
        to: ``"lstm"`` or ``"gru"``.
        forget_bias: start the forget gate (the GRU's update gate) at this bias
            (:func:`set_forget_bias_`); ``None`` keeps PyTorch's init.

    Returns:
        the names (``named_modules``) of the swapped layers.
    """
    if to not in GATED_LAYERS:
        raise ValueError(f"swap_rnn_ to must be one of {tuple(GATED_LAYERS)}, got {to!r}")
    if forget_bias is not None:
        forget_bias = _finite_bias(forget_bias)
    found = require_recurrent_modules(
        model, "swap_rnn_ replaces recurrent layers and has nothing to swap"
    )
    swapped = []
    for name, module in found:
        if not is_plain_rnn(module):
            continue
        if name == "":
            raise ValueError(
                f"swap_rnn_ cannot replace the model itself ({type(model).__name__}) in place: wrap it "
                "in a container, e.g. SequenceModel(rnn, head), and swap inside that"
            )
        replacement = _gated_replacement(module, to)
        if forget_bias is not None:
            set_forget_bias_(replacement, forget_bias)
        replacement.train(module.training)
        replace_module_(model, name, replacement)
        swapped.append(name)
    return swapped
