r"""Truncated back-propagation through time: a `Problem.step_fn` that detaches every k steps."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from graddoctor.problem import Problem, StepFunction, backward_and_step
from graddoctor.remedies.recurrent.model import (
    SequenceModel,
    detach_hidden,
    find_recurrent_modules,
    no_recurrent_module_error,
)


def _time_dim(model: nn.Module) -> int:
    if isinstance(model, SequenceModel):
        return 1 if model.batch_first else 0
    if hasattr(model, "batch_first"):
        return 1 if model.batch_first else 0
    found = find_recurrent_modules(model)
    if found and hasattr(found[0][1], "batch_first"):
        return 1 if found[0][1].batch_first else 0
    return 1


def _run_chunk(model: nn.Module, chunk: torch.Tensor, hidden: Any) -> tuple[Any, Any]:
    if isinstance(model, SequenceModel):
        return model(chunk, hidden, return_hidden=True)
    try:
        result = model(chunk, hidden)
    except TypeError as error:
        if not find_recurrent_modules(model):
            raise no_recurrent_module_error(
                model,
                "tbptt needs a SequenceModel or a model called as model(inputs, hidden) -> "
                "(outputs, hidden)",
            ) from error
        raise
    if not (isinstance(result, tuple) and len(result) == 2):
        raise TypeError(
            f"tbptt calls model(inputs, hidden) and expects (outputs, hidden); "
            f"{type(model).__name__} returned {type(result).__name__}. Wrap the recurrent core "
            "in graddoctor SequenceModel(rnn, head) or follow that protocol"
        )
    return result


def _per_step_targets(model: nn.Module, inputs: torch.Tensor, targets: Any, time_dim: int) -> bool:
    if isinstance(model, SequenceModel):
        return model.readout == "all"
    return (
        isinstance(targets, torch.Tensor)
        and targets.dim() > time_dim
        and targets.shape[: time_dim + 1] == inputs.shape[: time_dim + 1]
    )


def _chunk_bounds(length: int, k: int, align_end: bool) -> list[tuple[int, int]]:
    # align_end: the last chunk, the one that carries the loss, is a full k steps
    edges = sorted({0, *range(length, 0, -k)} if align_end else {*range(0, length, k), length})
    return list(zip(edges[:-1], edges[1:]))


def tbptt(k: int, per_step_targets: bool | None = None) -> StepFunction:
    r"""Truncated BPTT with :math:`k_1 = k_2 = k` as a ``Problem.step_fn``.

    The time axis of the inputs (dim 1 when batch-first) is cut into chunks of ``k``
    steps. The hidden state is carried from chunk to chunk but detached at every chunk
    boundary, so the gradient of a chunk's loss reaches back at most ``k`` steps:

    .. math::
        \frac{\partial E_{\text{chunk}}}{\partial W} = \sum_{t \in \text{chunk}}
        \frac{\partial E_t}{\partial h_t} \prod_{i=k+1}^{t} \frac{\partial h_i}{\partial h_{i-1}}
        \frac{\partial^+ h_k}{\partial W}, \quad t - k < k

    With per-step targets every chunk does zero_grad, forward, loss (+ penalties),
    backward, grad transforms and ``optimizer.step()`` (Williams & Peng's TBPTT(k, k)).
    With one target per sequence (``readout="last"``) the chunks are aligned to end at the
    last step, earlier chunks only advance the hidden state (no gradient), and the last
    chunk takes the single step: the gradient reaches the last ``k`` steps only.
    Source: Williams & Peng (1990); Pascanu, Mikolov & Bengio (2013).

    The model is either a :class:`SequenceModel` or follows the protocol
    ``model(inputs, hidden) -> (outputs, hidden)`` (``nn.RNN``, ``nn.LSTM``, ``nn.GRU``,
    :class:`ElmanRNN` themselves do); ``hidden=None`` on the first chunk.

    Args:
        k: the truncation length in time steps (>= 1).
        per_step_targets: whether ``targets`` has a time axis to cut like the inputs;
            ``None``: ``readout == "all"`` for a :class:`SequenceModel`, else targets whose
            leading dimensions equal the inputs'.

    Returns:
        ``step_fn(problem, model, optimizer, batch) -> loss``: the loss is the step-weighted
        mean of the chunk losses (per-step targets) or the last chunk's loss.
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"tbptt needs a truncation length k >= 1 (an int), got {k!r}")

    def step_fn(
        problem: Problem, model: nn.Module, optimizer: torch.optim.Optimizer, batch: Any
    ) -> torch.Tensor:
        inputs, targets = batch
        if not isinstance(inputs, torch.Tensor):
            raise TypeError(
                f"tbptt needs inputs as a tensor with a time axis, got {type(inputs).__name__}"
            )
        time_dim = _time_dim(model)
        if inputs.dim() <= time_dim:
            raise ValueError(
                f"tbptt inputs of shape {tuple(inputs.shape)} have no time axis {time_dim}"
            )
        per_step = per_step_targets
        if per_step is None:
            per_step = _per_step_targets(model, inputs, targets, time_dim)
        if per_step and not isinstance(targets, torch.Tensor):
            raise TypeError(
                f"per-step targets must be a tensor to cut in time, got {type(targets).__name__}"
            )
        length = inputs.shape[time_dim]
        if length < 1:
            raise ValueError("tbptt got a sequence of length 0: give at least one time step")
        hidden, total, steps, loss = None, None, 0, None
        for start, stop in _chunk_bounds(length, k, align_end=not per_step):
            chunk = inputs.narrow(time_dim, start, stop - start)
            last = stop == length
            if not per_step and not last:
                with torch.no_grad():
                    _, hidden = _run_chunk(model, chunk, hidden)
                hidden = detach_hidden(hidden)
                continue
            optimizer.zero_grad(set_to_none=True)
            outputs, hidden = _run_chunk(model, chunk, hidden)
            hidden = detach_hidden(hidden)
            chunk_targets = targets.narrow(time_dim, start, stop - start) if per_step else targets
            loss = problem.loss_fn(outputs, chunk_targets)
            if not isinstance(loss, torch.Tensor) or loss.dim() != 0:
                raise ValueError("the loss must be a scalar tensor: reduce it (e.g. .mean())")
            for penalty in problem.penalties:
                loss = loss + penalty(model, chunk, outputs)
            backward_and_step(problem, model, optimizer, loss)
            weighted = loss.detach() * (stop - start)
            total = weighted if total is None else total + weighted
            steps += stop - start
        if per_step:
            return total / steps
        return loss.detach()

    step_fn.__name__ = f"tbptt_{k}"
    step_fn.__qualname__ = step_fn.__name__
    return step_fn
