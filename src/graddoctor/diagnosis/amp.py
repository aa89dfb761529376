r"""``amp_scale_collapse``: the loss scale of ``torch.amp.GradScaler`` falling for good.

Dynamic loss scaling (Micikevicius et al. 2018, "Mixed Precision Training") multiplies
the loss by a scale :math:`S` so that small float16 gradients do not underflow. A step
whose scaled gradients overflow is skipped and :math:`S` is halved; after a run of
clean steps (2000 by default) it doubles. Skips are part of normal operation: the first
steps calibrate :math:`S` down from :math:`2^{16}`, and an occasional overflow costs one
step. A monitor that calls those steps exploding or non-finite is wrong, so skipped
steps (``amp_skipped = 1``, recorded by ``Monitor(..., scaler=scaler)``) are taken out of
the other detectors' view while they stay transient.

They are persistent, and a finding of their own, when the scale collapses

.. math::
    \log_2 \frac{S_0}{S_\text{last}} > 10

(ten more halvings than doublings), or when more than half of the last 20 steps were
skipped. Then the gradients overflow float16 even at a small scale (or are NaN), and the
skipped steps go back into the view, so ``nonfinite`` and ``exploding_gradients`` see them.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np

from .._signals.amp import ScalerHistory, collapse_finding
from ..store import Run
from ..views import RunView, owner_module
from .findings import Finding

Detector = Callable[[RunView, dict], list[Finding]]


def scaler_history(run: Run) -> ScalerHistory | None:
    """The run's GradScaler record, or None when it was not recorded with a scaler."""
    names = set(run.scalar_names())
    if "amp_skipped" not in names:
        return None
    steps, skipped = run.scalars("amp_skipped")
    scale_steps, scales = (
        run.scalars("amp_scale") if "amp_scale" in names else (np.zeros(0, np.int64), np.zeros(0))
    )
    return ScalerHistory(steps, np.nan_to_num(skipped), scale_steps, scales)


def transient_skipped_steps(run: Run) -> np.ndarray:
    """The steps GradScaler skipped, when the skips are transient (empty when they persist)."""
    history = scaler_history(run)
    if history is None or history.collapsed():
        return np.zeros(0, dtype=np.int64)
    return history.skipped_steps


def skipping_transient_amp_steps(detector: Detector) -> Detector:
    """``detector`` run on the view without the steps GradScaler skipped, while they are transient."""

    @functools.wraps(detector)
    def run_detector(view: RunView, context: dict) -> list[Finding]:
        skipped = transient_skipped_steps(view.run)
        return detector(view.without_steps(skipped) if skipped.size else view, context)

    return run_detector


def amp_findings(view: RunView, context: dict) -> list[Finding]:
    """``amp_scale_collapse`` when GradScaler's scale collapses or most recent steps are skipped."""
    history = scaler_history(view.run)
    finding = None if history is None else collapse_finding(history)
    if finding is None:
        return []
    finding.layers = _overflowing_layers(view, history.skipped_steps)
    return [finding]


def _overflowing_layers(view: RunView, skipped: np.ndarray, count: int = 3) -> list[str]:
    """The modules with the most non-finite gradient entries over the skipped steps."""
    counts = view.params.stats.get("grad_nonfinite")
    rows = np.isin(view.params.steps, skipped)
    if counts is None or not rows.any():
        return []
    totals: dict[str, float] = {}
    for name, value in zip(view.params.names, np.nansum(counts[rows], axis=0), strict=True):
        if value > 0:
            module = owner_module(name)
            totals[module] = totals.get(module, 0.0) + float(value)
    return [m for m, _ in sorted(totals.items(), key=lambda kv: -kv[1])[:count]]
