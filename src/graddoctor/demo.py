"""The built-in demonstration runs behind ``graddoctor demo``."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from .monitor import Monitor
from .problem import train_step
from .scenarios.regression import exploding_regression
from .store import open_run


@dataclass
class DemoResult:
    """Losses of the recorded run and where they stopped being finite."""

    run_path: str
    losses: list[float]
    epoch_losses: list[float]
    first_nonfinite_step: int | None
    first_bad_gradient_step: int | None


def run_exploding_regression(path: str | os.PathLike, *, epochs: int = 2, progress: Any = None) -> DemoResult:
    """Train seed 004's regression for ``epochs`` epochs under a Monitor, as the seed does.

    Args:
        path: the run file to write (replaced if it exists).
        epochs: epochs of 32 batches each.
        progress: an optional ``rich.progress.Progress`` to advance.
    """
    problem = exploding_regression()
    model = problem.model
    optimizer = problem.make_optimizer(model)
    per_epoch = len(problem.data)
    total = epochs * per_epoch
    losses: list[float] = []
    task = None
    if progress is not None:
        progress.start()
        task = progress.add_task("train", total=total, loss="")
    try:
        with Monitor(model, optimizer, path=path, activations_every=1, overwrite=True,
                     config={"scenario": problem.name, **problem.notes}) as mon:
            for _, batch in zip(range(total), problem.batches()):
                loss = train_step(problem, model, optimizer, batch)
                mon.log(loss=loss)
                losses.append(float(loss))
                if task is not None:
                    progress.update(task, advance=1, loss=f"{losses[-1]:.3g}")
    finally:
        if progress is not None:
            progress.stop()
    epoch_losses = [sum(losses[i : i + per_epoch]) / len(losses[i : i + per_epoch]) for i in range(0, total, per_epoch)]
    first = next((i for i, v in enumerate(losses) if not math.isfinite(v)), None)
    with open_run(path) as run:
        steps, _, grad_norm = run.series("grad_norm")
    bad = [int(s) for s, row in zip(steps, grad_norm, strict=True) if not np.all(np.isfinite(row))]
    return DemoResult(str(path), losses, epoch_losses, first, bad[0] if bad else None)
