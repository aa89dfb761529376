"""Whether a run holds the evidence for a verdict: ``healthy`` only when it does.

A detector that finds nothing on a run without gradients, without a loss, or of two
steps has not shown the run healthy. :func:`evidence_gaps` names what is missing
(``Diagnosis.insufficient``: no verdict of health is possible) and what could not be
checked although a verdict is (``Diagnosis.limits``).
"""

from __future__ import annotations

import numpy as np

from ..monitor._compiled import ACTIVATIONS_SKIPPED
from ..views import RunView
from . import thresholds as T
from ._common import plural
from .loss import finite_losses


def _gradient_steps(view: RunView) -> int:
    """Recorded parameter steps where at least one gradient was measured (a NaN gradient is one)."""
    counts = view.params.stats.get("grad_nonfinite")  # NaN where no gradient was there
    if counts is None or counts.size == 0:
        return 0
    return int(np.sum(~np.all(np.isnan(counts), axis=1)))


def evidence_gaps(view: RunView) -> tuple[list[str], list[str]]:
    """What keeps a run from being called healthy, and what was not checked.

    Returns:
        ``(insufficient, limits)``: reasons no verdict of health is possible (no gradient
        recorded, fewer than ``MIN_STEPS_FOR_VERDICT`` steps with gradients, no loss), and
        the checks the run's records did not allow.
    """
    insufficient: list[str] = []
    limits: list[str] = []
    measured = _gradient_steps(view)
    if measured == 0:
        insufficient.append(
            "no gradient was recorded: the optimizer stepped with no .grad on any parameter "
            "(zeroed before the step, or never computed)"
        )
    elif measured < T.MIN_STEPS_FOR_VERDICT:
        insufficient.append(
            f"only {plural(measured, 'step')} with gradients recorded "
            f"(a verdict needs at least {T.MIN_STEPS_FOR_VERDICT})"
        )
    if not view.has_scalar("loss"):
        insufficient.append(
            "no loss was recorded (Monitor.log(loss=...)), so a rising or NaN loss cannot be seen"
        )
    elif len(finite_losses(view)[1]) <= T.LOSS_WINDOW:
        limits.append(
            f"fewer than {T.LOSS_WINDOW + 1} finite losses: a diverging loss was not checked"
        )
    if not view.modules.stats:
        skipped = view.run.events(ACTIVATIONS_SKIPPED)
        why = f" ({skipped[0].get('reason')})" if skipped else ""
        limits.append(
            f"no activation statistics were recorded{why}: the signal over depth, saturation "
            "and dead units were not checked"
        )
    return insufficient, limits
