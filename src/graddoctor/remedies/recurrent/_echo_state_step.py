"""The training step of the ``echo_state`` remedy: a ridge fit of the readout on every batch seen."""

from __future__ import annotations

import weakref
from typing import Any

import torch
from torch import nn

from graddoctor.problem import Problem, StepFunction
from graddoctor.remedies.recurrent.echo_state import EchoStateNetwork


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
    sums: weakref.WeakKeyDictionary[nn.Module, tuple[torch.Tensor, torch.Tensor]] = (
        weakref.WeakKeyDictionary()
    )

    def echo_state_fit(
        problem: Problem, model: nn.Module, optimizer: Any, batch: Any
    ) -> torch.Tensor:
        if not isinstance(model, EchoStateNetwork):
            raise TypeError(
                f"the echo-state step trains an EchoStateNetwork, got {type(model).__name__}"
            )
        inputs, targets = batch
        model._check_targets(inputs, targets, "echo-state targets")
        with torch.no_grad():
            states = model.states(inputs)
            features = states[:, -1] if model.readout_mode == "last" else states
            loss = problem.loss_fn(model.readout(features), targets)
            gram, cross = model._normal_equations(features, targets)
            if model in sums:
                gram, cross = gram + sums[model][0], cross + sums[model][1]
            sums[model] = (gram, cross)
            model._solve_readout_(gram, cross)
        return loss.detach()

    echo_state_fit.closed_form = True  # type: ignore[attr-defined]  # no gradient step to clip
    return echo_state_fit
