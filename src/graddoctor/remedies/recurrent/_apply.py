"""The code of the recurrent family's registered remedies (declared in ``remedies/_entries/recurrent.py``).

TBPTT, penalties, Omega, leaky units, gating and echo state, each on a Problem.
"""

from __future__ import annotations

import numbers
from typing import Any

import torch
from torch import nn

from graddoctor.problem import Problem
from graddoctor.remedies._common import first_inputs, put_module, reference_parameter, seeded_rng
from graddoctor.remedies._entries.recurrent import VANISHING_REGULARIZER
from graddoctor.remedies._remedy import STEP_REMEDY_NOTE
from graddoctor.remedies.recurrent._echo_state_step import echo_state_step
from graddoctor.remedies.recurrent.cells import ElmanRNN, RecurrentCore
from graddoctor.remedies.recurrent.echo_state import EchoStateNetwork
from graddoctor.remedies.recurrent.leaky import LeakyRNN
from graddoctor.remedies.recurrent.model import SequenceModel, find_recurrent_modules
from graddoctor.remedies.recurrent.omega import omega_step
from graddoctor.remedies.recurrent.swap import core_from, is_elman_rnn, is_plain_rnn, swap_rnn_
from graddoctor.remedies.recurrent.tbptt import tbptt
from graddoctor.remedies.recurrent.weights import recurrent_penalty, recurrent_weights

_NO_RECURRENT = "the model has no recurrent layer (nn.RNN/LSTM/GRU, ElmanRNN, LeakyRNN)"


def _found_names(model: nn.Module) -> str:
    return ", ".join(
        f"{name or '<model>'} ({type(m).__name__})" for name, m in find_recurrent_modules(model)
    )


def _replace_cores(
    problem: Problem, selected: Any, core_type: type[RecurrentCore], seed: int | None, **extra: Any
) -> Problem:
    chosen = [(name, m) for name, m in problem.model.named_modules() if selected(m)]
    with seeded_rng(seed, problem.model):
        for name, module in chosen:
            problem = put_module(problem, name, core_from(module, core_type, **extra))
    return problem


def _tbptt_check(problem: Problem) -> str | None:
    model = problem.model
    if not find_recurrent_modules(model):
        return _NO_RECURRENT
    if not isinstance(model, (SequenceModel, nn.RNNBase, RecurrentCore)):
        return (
            f"tbptt carries the hidden state between chunks, so the model must be a SequenceModel(rnn, "
            f"head) or be called as model(inputs, hidden) -> (outputs, hidden); {type(model).__name__} is neither"
        )
    return None


def _tbptt(problem: Problem, params: dict[str, Any]) -> Problem:
    return problem.replace(step_fn=tbptt(params["k"]))


def _penalty_check(problem: Problem) -> str | None:
    try:
        recurrent_weights(problem.model)
    except ValueError:
        return f"{_NO_RECURRENT}: there is no recurrent matrix W_hh to penalise"
    return None


def _penalty(problem: Problem, params: dict[str, Any]) -> Problem:
    penalty = recurrent_penalty(
        kind=params["kind"], strength=params["strength"], bound=params["bound"]
    )
    return problem.replace(penalties=(*problem.penalties, penalty))


def _omega_check(problem: Problem) -> str | None:
    model = problem.model
    if not find_recurrent_modules(model):
        return _NO_RECURRENT
    if not any(isinstance(m, RecurrentCore) or is_elman_rnn(m) for m in model.modules()):
        return (
            "Omega reads the hidden states of plain Elman layers (a single-layer unidirectional "
            f"tanh/relu nn.RNN, ElmanRNN or LeakyRNN); found {_found_names(model)}"
        )
    return None


def _omega(problem: Problem, params: dict[str, Any]) -> Problem:
    step = omega_step(strength=params["strength"])  # validates strength before the model changes
    problem = _replace_cores(problem, is_elman_rnn, ElmanRNN, seed=0)
    return problem.replace(step_fn=step)


def _leaky_candidate(module: nn.Module) -> bool:
    return is_elman_rnn(module) or type(module) is ElmanRNN


def _leaky_check(problem: Problem) -> str | None:
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


def _leaky(problem: Problem, params: dict[str, Any]) -> Problem:
    return _replace_cores(
        problem, _leaky_candidate, LeakyRNN, params["seed"], leak_range=tuple(params["leak_range"])
    )


def _gated_check(problem: Problem) -> str | None:
    model = problem.model
    if not find_recurrent_modules(model):
        return _NO_RECURRENT
    plain = [name for name, m in model.named_modules() if is_plain_rnn(m)]
    if not plain:
        return f"no plain RNN layer to replace by a gated one; found {_found_names(model)}"
    if plain == [""]:
        return "the model is itself the RNN: wrap it in SequenceModel(rnn, head) so the core can be swapped"
    owner = problem.notes.get(STEP_REMEDY_NOTE)
    if owner == VANISHING_REGULARIZER.id:
        return f"the Omega step ({owner}) reads Elman/leaky layers, which an LSTM/GRU would remove"
    return None


def _gated(to: str) -> Any:
    def transform(problem: Problem, params: dict[str, Any]) -> Problem:
        with seeded_rng(params["seed"], problem.model):
            swap_rnn_(problem.model, to=to, forget_bias=params["forget_bias"])
        return problem

    transform.__name__ = f"swap_to_{to}"
    return transform


def _echo_state_check(problem: Problem) -> str | None:
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
    if not (
        isinstance(inputs, torch.Tensor)
        and inputs.dim() == 3
        and inputs.shape[-1] == core.input_size
    ):
        shape = tuple(inputs.shape) if isinstance(inputs, torch.Tensor) else type(inputs).__name__
        return f"the echo-state network needs inputs [B, T, {core.input_size}], the first batch has {shape}"
    return None


def _echo_state(problem: Problem, params: dict[str, Any]) -> Problem:
    model: SequenceModel = problem.model
    size = params["reservoir_size"]
    if size is None:
        size = model.rnn.hidden_size
    if isinstance(size, bool) or not isinstance(size, numbers.Integral) or size < 1:
        raise ValueError(
            f"reservoir_size must be a positive int or None (the core's hidden size), got {size!r}"
        )
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
    return problem.replace(model=network, step_fn=echo_state_step())
