"""Registry transforms for recurrent remedies: TBPTT, penalties, Omega, leaky units, gating, echo state.

Each ``*_check(problem) -> reason | None`` says why its remedy does not apply; each
``*_transform(problem, params) -> Problem`` acts on the working copy the protocol hands it.
"""

from __future__ import annotations

import numbers
import weakref
from typing import Any

import torch
from torch import nn

from graddoctor.problem import Problem, StepFunction
from graddoctor.remedies._recurrent_cells import ElmanRNN, RecurrentCore
from graddoctor.remedies._recurrent_model import SequenceModel, find_recurrent_modules
from graddoctor.remedies._recurrent_swap import swap_rnn_
from graddoctor.remedies._recurrent_tbptt import tbptt
from graddoctor.remedies._recurrent_weights import recurrent_penalty, recurrent_weights
from graddoctor.remedies._registry_common import (
    first_inputs,
    free_step_reason,
    put_module,
    reference_parameter,
    seeded_rng,
    with_step,
)
from graddoctor.remedies._registry_protocol import STEP_REMEDY_NOTE
from graddoctor.remedies.echo_state import EchoStateNetwork
from graddoctor.remedies.leaky import LeakyRNN
from graddoctor.remedies.omega import omega_step

_NO_RECURRENT = "the model has no recurrent layer (nn.RNN/LSTM/GRU, ElmanRNN, LeakyRNN)"


def _is_elman_rnn(module: nn.Module) -> bool:
    """A single-layer, unidirectional tanh/relu ``nn.RNN``: the same function as an ElmanRNN."""
    return (
        isinstance(module, nn.RNN)
        and module.mode in ("RNN_TANH", "RNN_RELU")
        and module.num_layers == 1
        and not module.bidirectional
    )


def _found_names(model: nn.Module) -> str:
    return ", ".join(f"{name or '<model>'} ({type(m).__name__})" for name, m in find_recurrent_modules(model))


def core_from(module: nn.Module, core_type: type[RecurrentCore], **extra: Any) -> RecurrentCore:
    r"""A graddoctor recurrent core with the weights of a one-layer ``nn.RNN`` or core.

    ``nn.RNN``'s two biases are summed into the core's one: :math:`b = b_{ih} + b_{hh}`
    (zero when the RNN has none). Sizes, nonlinearity, ``batch_first``, dtype, device,
    ``requires_grad`` flags and train/eval mode are kept.
    """
    if isinstance(module, nn.RNN):
        weight_ih, weight_hh = module.weight_ih_l0, module.weight_hh_l0
        bias = module.bias_ih_l0 + module.bias_hh_l0 if module.bias else torch.zeros_like(weight_hh[:, 0])
    else:
        weight_ih, weight_hh, bias = module.weight_ih, module.weight_hh, module.bias
    core = core_type(
        module.input_size, module.hidden_size, nonlinearity=module.nonlinearity,
        batch_first=module.batch_first, device=weight_hh.device, dtype=weight_hh.dtype, **extra,
    )  # fmt: skip
    with torch.no_grad():
        for target, source in ((core.weight_ih, weight_ih), (core.weight_hh, weight_hh), (core.bias, bias)):
            target.copy_(source)
    core.weight_ih.requires_grad_(weight_ih.requires_grad)
    core.weight_hh.requires_grad_(weight_hh.requires_grad)
    core.train(module.training)
    return core


def _replace_cores(problem: Problem, selected: Any, core_type: type[RecurrentCore], seed: int | None, **extra: Any) -> Problem:
    chosen = [(name, m) for name, m in problem.model.named_modules() if selected(m)]
    with seeded_rng(seed, problem.model):
        for name, module in chosen:
            problem = put_module(problem, name, core_from(module, core_type, **extra))
    return problem


# --- truncated BPTT and recurrent penalties ---------------------------------------------


def tbptt_check(problem: Problem) -> str | None:
    model = problem.model
    if not find_recurrent_modules(model):
        return _NO_RECURRENT
    if not isinstance(model, (SequenceModel, nn.RNNBase, RecurrentCore)):
        return (
            f"tbptt carries the hidden state between chunks, so the model must be a SequenceModel(rnn, "
            f"head) or be called as model(inputs, hidden) -> (outputs, hidden); {type(model).__name__} is neither"
        )
    return free_step_reason(problem, "tbptt")


def tbptt_transform(problem: Problem, params: dict[str, Any]) -> Problem:
    return with_step(problem, tbptt(params["k"]), "tbptt")


def recurrent_penalty_check(problem: Problem) -> str | None:
    try:
        recurrent_weights(problem.model)
    except ValueError:
        return f"{_NO_RECURRENT}: there is no recurrent matrix W_hh to penalise"
    return None


def recurrent_penalty_transform(problem: Problem, params: dict[str, Any]) -> Problem:
    penalty = recurrent_penalty(kind=params["kind"], strength=params["strength"], bound=params["bound"])
    return problem.replace(penalties=(*problem.penalties, penalty))


# --- Omega and leaky units (Elman layers) -----------------------------------------------


def vanishing_check(problem: Problem) -> str | None:
    model = problem.model
    if not find_recurrent_modules(model):
        return _NO_RECURRENT
    if not any(isinstance(m, RecurrentCore) or _is_elman_rnn(m) for m in model.modules()):
        return (
            "Omega reads the hidden states of plain Elman layers (a single-layer unidirectional "
            f"tanh/relu nn.RNN, ElmanRNN or LeakyRNN); found {_found_names(model)}"
        )
    return free_step_reason(problem, "vanishing_regularizer")


def vanishing_transform(problem: Problem, params: dict[str, Any]) -> Problem:
    step = omega_step(strength=params["strength"])  # validates strength before the model changes
    problem = _replace_cores(problem, _is_elman_rnn, ElmanRNN, seed=0)
    return with_step(problem, step, "vanishing_regularizer")


def _leaky_candidate(module: nn.Module) -> bool:
    return _is_elman_rnn(module) or type(module) is ElmanRNN


def leaky_check(problem: Problem) -> str | None:
    model = problem.model
    if not find_recurrent_modules(model):
        return _NO_RECURRENT
    if not any(_leaky_candidate(m) for m in model.modules()):
        if any(isinstance(m, LeakyRNN) for m in model.modules()):
            return "the recurrent layers are LeakyRNN already"
        return (
            "leaky units replace single-layer unidirectional tanh/relu nn.RNN or ElmanRNN layers; "
            f"found {_found_names(model)}"
        )
    return None


def leaky_transform(problem: Problem, params: dict[str, Any]) -> Problem:
    return _replace_cores(problem, _leaky_candidate, LeakyRNN, params["seed"], leak_range=tuple(params["leak_range"]))


# --- gated units ------------------------------------------------------------------------


def _is_plain(module: nn.Module) -> bool:
    return isinstance(module, RecurrentCore) or (
        isinstance(module, nn.RNNBase) and module.mode in ("RNN_TANH", "RNN_RELU")
    )


def gated_check(problem: Problem) -> str | None:
    model = problem.model
    if not find_recurrent_modules(model):
        return _NO_RECURRENT
    plain = [name for name, m in model.named_modules() if _is_plain(m)]
    if not plain:
        return f"no plain RNN layer to replace by a gated one; found {_found_names(model)}"
    if plain == [""]:
        return "the model is itself the RNN: wrap it in SequenceModel(rnn, head) so the core can be swapped"
    if problem.notes.get(STEP_REMEDY_NOTE) == "vanishing_regularizer":
        return "the Omega step (vanishing_regularizer) reads Elman/leaky layers, which an LSTM/GRU would remove"
    return None


def gated_transform(to: str) -> Any:
    def transform(problem: Problem, params: dict[str, Any]) -> Problem:
        with seeded_rng(params["seed"], problem.model):
            swap_rnn_(problem.model, to=to)
        return problem

    transform.__name__ = f"swap_to_{to}"
    return transform


# --- echo state network -----------------------------------------------------------------


def echo_state_check(problem: Problem) -> str | None:
    model = problem.model
    if not isinstance(model, SequenceModel):
        if not find_recurrent_modules(model):
            return _NO_RECURRENT
        return f"echo_state replaces a SequenceModel(rnn, head); {type(model).__name__} is not one"
    core = model.rnn
    if not all(isinstance(getattr(core, n, None), int) for n in ("input_size", "hidden_size")):
        return f"cannot read input_size / hidden_size of the core {type(core).__name__}"
    if not model.batch_first:
        return "the echo-state network takes batch-first inputs [B, T, I]; the core has batch_first=False"
    try:
        inputs = first_inputs(problem)
    except ValueError as error:
        return str(error)
    if not (isinstance(inputs, torch.Tensor) and inputs.dim() == 3 and inputs.shape[-1] == core.input_size):
        shape = tuple(inputs.shape) if isinstance(inputs, torch.Tensor) else type(inputs).__name__
        return f"the echo-state network needs inputs [B, T, {core.input_size}], the first batch has {shape}"
    return free_step_reason(problem, "echo_state")


def echo_state_transform(problem: Problem, params: dict[str, Any]) -> Problem:
    model: SequenceModel = problem.model
    size = params["reservoir_size"]
    if size is None:
        size = model.rnn.hidden_size
    if isinstance(size, bool) or not isinstance(size, numbers.Integral) or size < 1:
        raise ValueError(f"reservoir_size must be a positive int or None (the core's hidden size), got {size!r}")
    reference = reference_parameter(model)
    factory = {} if reference is None else {"device": reference.device, "dtype": reference.dtype}
    with seeded_rng(params["seed"], model):
        with torch.no_grad():
            output_size = model(first_inputs(problem)).shape[-1]
        network = EchoStateNetwork(
            model.rnn.input_size, int(size), int(output_size), spectral_radius=params["spectral_radius"],
            ridge=params["ridge"], readout=model.readout, **factory,
        )  # fmt: skip
    network.train(model.training)
    return with_step(problem.replace(model=network), echo_state_step(), "echo_state")


def echo_state_step() -> StepFunction:
    r"""A ``Problem.step_fn`` fitting an echo-state readout by ridge regression on all batches seen.

    For each batch the reservoir states :math:`X` (with a bias column) and targets
    :math:`Y` are added to the running sums :math:`G = \sum X^\top X` and
    :math:`C = \sum X^\top Y` (float64), then the readout is solved in closed form,

    .. math:: [W_{out}, b_{out}] = \big((G + \beta I)^{-1} C\big)^\top,

    which equals :meth:`EchoStateNetwork.fit` on every batch seen so far at once (a fit on
    the last batch alone would forget the others). The sums are kept per model object, so
    a deep copy of the model starts new ones. No gradient is used: penalties, gradient
    transforms and the optimizer are ignored (the optimizer must still be constructible).
    Source: Jaeger (2001); Lukoševičius & Jaeger (2009).

    Returns:
        ``step_fn(problem, model, optimizer, batch) -> loss``: the batch's loss *before* the
        readout is refitted, as ``train_step`` reports the loss before its update.
    """
    sums: weakref.WeakKeyDictionary[nn.Module, tuple[torch.Tensor, torch.Tensor]] = weakref.WeakKeyDictionary()

    def echo_state_fit(problem: Problem, model: nn.Module, optimizer: Any, batch: Any) -> torch.Tensor:
        if not isinstance(model, EchoStateNetwork):
            raise TypeError(f"the echo-state step trains an EchoStateNetwork, got {type(model).__name__}")
        inputs, targets = batch
        expected = (inputs.shape[0], model.output_size) if model.readout_mode == "last" else (
            *inputs.shape[:2], model.output_size)  # fmt: skip
        if not isinstance(targets, torch.Tensor) or tuple(targets.shape) != expected:
            shape = tuple(targets.shape) if isinstance(targets, torch.Tensor) else type(targets).__name__
            raise ValueError(f"echo-state targets must be {list(expected)} (readout {model.readout_mode!r}), got {shape}")
        with torch.no_grad():
            states = model.states(inputs)
            features = states[:, -1] if model.readout_mode == "last" else states
            loss = problem.loss_fn(model.readout(features), targets)
            design = features.reshape(-1, model.reservoir_size).double()
            design = torch.cat([design, design.new_ones(design.shape[0], 1)], dim=1)
            wanted = targets.reshape(-1, model.output_size).double()
            gram, cross = design.T @ design, design.T @ wanted
            if model in sums:
                gram, cross = gram + sums[model][0], cross + sums[model][1]
            sums[model] = (gram, cross)
            ridge = model.ridge * torch.eye(gram.shape[0], dtype=gram.dtype, device=gram.device)
            solution = torch.linalg.solve(gram + ridge, cross).T  # [O, R + 1]
            model.readout.weight.copy_(solution[:, :-1])
            model.readout.bias.copy_(solution[:, -1])
        return loss.detach()

    return echo_state_fit
