"""``checkup``: a short monitored training on a copy, a zero-learning-rate control, a diagnosis.

The caller's model and optimizer are never touched: training runs on a deep copy, and
the global random state is restored afterwards. Training stops at the first non-finite
loss or weight; the failing step is then replayed from the parameters before it under
``locate_nonfinite`` to name the module where the NaN/Inf began. A ``torch.compile``-d
model is checked eagerly, on a copy of its ``_orig_mod``: a checkup is a short run where
activation statistics matter more than speed, and the Monitor records none on a
compiled model.

What it costs: gradients, weights and updates are measured at every step; the activation
statistics (forward and backward hooks, the costliest part) at the first steps and then
at evenly spaced steps up to the last (:func:`activation_schedule`), so the detectors'
"at the first recorded step or at most recorded steps" reads the same fractions of the run;
the zero-learning-rate control is evaluated only on the steps the diagnosis compares
(:func:`~graddoctor.diagnosis.diagnose.zero_lr_window`), and at step 0 it is the training
forward itself. ``python benchmarks/checkup.py`` prints the cost against plain training.
"""

from __future__ import annotations

import copy
import itertools
import math
import os
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ._findings import GradDoctorWarning
from ._foreach import max_abs
from ._paths import timestamped_run_path
from .diagnosis.diagnose import diagnose, zero_lr_window
from .diagnosis.findings import Diagnosis
from .monitor import Monitor
from .monitor.schedules import Schedule
from .probes.nonfinite_replay import eager_module, locate_nonfinite
from .problem import OptimizerFactory, Problem, train_step
from .theory import recurrent_spectra


def _as_problem(model_or_problem: Any, data: Any, loss_fn: Any, optimizer: Any) -> Problem:
    if isinstance(model_or_problem, Problem):
        if data is not None or loss_fn is not None:
            raise TypeError(
                "checkup(problem) takes no data or loss_fn: they are inside the Problem"
            )
        problem = model_or_problem
    else:
        if data is None or loss_fn is None:
            raise TypeError(
                "checkup(model, data, loss_fn) needs data (a list of (inputs, targets)) and loss_fn"
            )
        problem = Problem(model_or_problem, data, loss_fn, optimizer=optimizer)
    factory = problem.optimizer
    if isinstance(factory, torch.optim.Optimizer):
        raise TypeError(
            "optimizer must be a factory params -> Optimizer (e.g. lambda p: torch.optim.Adam(p, lr=1e-3)), "
            "not an optimizer instance: checkup never steps your optimizer"
        )
    return problem


def _parameters_finite(model: nn.Module) -> bool:
    """No NaN/Inf entry in any parameter (max |w|, which cannot overflow like a norm)."""
    params = [p.detach() for p in model.parameters()]
    return not params or bool(torch.isfinite(max_abs(params)).all())


def _default_path() -> Path:
    return timestamped_run_path("runs", "checkup")


# Activation statistics at the first DENSE_START steps, then at about SAMPLED_STEPS evenly
# spaced steps and the last one: 13 of 30 steps, 14 of 200.
DENSE_START = 3
SAMPLED_STEPS = 10


def activation_schedule(steps: int) -> Schedule:
    """The steps of a ``steps``-step checkup that record activation statistics.

    Steps ``0 .. DENSE_START - 1``, every ``ceil(steps / SAMPLED_STEPS)``-th step and the
    last step: a run of up to ``SAMPLED_STEPS`` steps records every step.

    Returns:
        a schedule ``step -> bool`` (see :mod:`graddoctor.monitor.schedules`).
    """
    stride = max(1, math.ceil(steps / SAMPLED_STEPS))
    return lambda step: step < DENSE_START or step % stride == 0 or step == steps - 1


def checkup(
    model_or_problem: nn.Module | Problem,
    data: Iterable[Any] | None = None,
    loss_fn: Callable[[Any, Any], torch.Tensor] | None = None,
    *,
    optimizer: OptimizerFactory | None = None,
    steps: int = 30,
    run_path: str | os.PathLike | None = None,
    seed: int = 0,
    control: bool = True,
    activations_every: int | Schedule | None = None,
) -> Diagnosis:
    """Diagnose a model on its own data: monitored training, zero-lr control, findings.

    Args:
        model_or_problem: a model, or a ``Problem`` bundling model, data, loss and optimizer.
        data: a list or iterable of ``(inputs, targets)`` batches (cycled).
        loss_fn: ``loss_fn(outputs, targets) -> scalar tensor``.
        optimizer: a factory ``params -> Optimizer`` (default SGD, lr 0.01).
        steps: training steps to record (gradients, weights and updates at every step).
        run_path: where to write the run file (default ``runs/checkup-<time>.gdr``).
        seed: the random seed of the copy's training (dropout, shuffles).
        control: also evaluate the untrained copy on the batches of the last steps, the
            ones the diagnosis compares (the lecture's advice: "train with 0 learning rate
            and compare").
        activations_every: the schedule of activation statistics (an int n = every n
            steps, or ``step -> bool``); default :func:`activation_schedule` of ``steps``.

    Returns:
        the ``Diagnosis``; ``diagnosis.run_path`` is the recorded run.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    problem = _as_problem(model_or_problem, data, loss_fn, optimizer)
    path = Path(run_path) if run_path is not None else _default_path()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = copy.deepcopy(eager_module(problem.model))
        initial = copy.deepcopy(eager_module(problem.model))
        optimizer_ = problem.make_optimizer(model)
        schedule = activation_schedule(steps) if activations_every is None else activations_every
        monitor = Monitor(
            model,
            optimizer_,
            path=path,
            activations_every=schedule,
            overwrite=run_path is not None,
            config={"checkup": True, "steps": steps, "problem": problem.name, "seed": seed},
        )
        # the steps the diagnosis compares with the zero-learning-rate control
        first_control = steps - zero_lr_window(steps) if control else steps
        # the Monitor's live findings are not warned: the returned diagnosis names them
        with warnings.catch_warnings(), monitor:  # closing it commits the last steps: still quiet
            warnings.simplefilter("ignore", GradDoctorWarning)
            monitor.writer.set_meta({"recurrent_spectra": _spectra(model)})
            initial.train(problem.model.training)
            zero_lr = _ZeroLearningRate(problem, initial)
            # one batch at a time: nothing is drawn ahead, nothing kept but the current batch
            for step, batch in enumerate(itertools.islice(problem.batches(), steps)):
                before = {k: v.detach().clone() for k, v in model.state_dict().items()}
                loss = train_step(problem, model, optimizer_, batch)
                monitor.log(loss=loss)
                if step >= first_control:
                    monitor.log(step=step, **{"control/loss": zero_lr.loss(batch, step, loss)})
                if not bool(torch.isfinite(loss)) or not _parameters_finite(model):
                    _localise(problem, model, before, batch, step, monitor)
                    break
    return diagnose(path)


def _spectra(model: nn.Module) -> list[dict]:
    try:
        rows = recurrent_spectra(model)
    except Exception:  # spectra are evidence, never a reason to fail a checkup
        return []
    best: dict[str, dict] = {}
    for row in rows:
        module = row["name"].split(".weight_hh")[0]
        current = best.get(module)
        if current is None or row["largest_singular_value"] > current["largest_singular_value"]:
            best[module] = {
                "module": module,
                "largest_singular_value": row["largest_singular_value"],
                "spectral_radius": row.get("spectral_radius"),
            }
    return list(best.values())


def _localise(
    problem: Problem, model: nn.Module, before: dict, batch: Any, step: int, monitor: Monitor
) -> None:
    """Replay the failing batch from the parameters before the step and record where NaN/Inf began."""
    replay = copy.deepcopy(model)
    replay.load_state_dict(before)
    inputs, targets = batch
    report = locate_nonfinite(replay, inputs, targets, problem.loss_fn)
    if report is not None:
        monitor.writer.add_event(step, "nonfinite_source", {**report.to_dict(), "step": step})


class _ZeroLearningRate:
    """The untrained copy's loss on a step's batch (the lecture's "train with 0 learning rate" control).

    Computed beside training, so no batch is kept for it; under its own random state, so
    the training's random stream (dropout) is the one it would be without the control.
    At step 0 the trained model is still the untrained one: a plain step's loss (one
    forward, no penalty, no step function of its own) is the control's, reused.
    """

    def __init__(self, problem: Problem, initial: nn.Module) -> None:
        self.problem = problem
        self.initial = initial
        self.devices = sorted(
            {p.device.index or 0 for p in initial.parameters() if p.device.type == "cuda"}
        )
        self.plain_step = problem.step_fn is None and not problem.penalties

    def loss(self, batch: Any, step: int, trained_loss: torch.Tensor) -> torch.Tensor:
        """The control's loss at ``step`` (``trained_loss``: the training's loss on the same batch)."""
        if step == 0 and self.plain_step:
            return trained_loss
        inputs, targets = batch
        with torch.random.fork_rng(devices=self.devices), torch.no_grad():
            return self.problem.loss_fn(self.initial(inputs), targets)
