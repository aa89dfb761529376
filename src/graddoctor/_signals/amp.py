r"""``amp_scale_collapse``: the loss scale of ``torch.amp.GradScaler`` falling for good.

Dynamic loss scaling (Micikevicius et al. 2018, "Mixed Precision Training") multiplies
the loss by a scale :math:`S`; a step whose scaled gradients overflow is skipped and
:math:`S` halved, a run of clean steps doubles it. Skips are normal while they stay
transient. The scale has collapsed when

.. math::
    \log_2 \frac{S_0}{S_\text{last}} > 10

(ten more halvings than doublings), or when more than half of the last 20 steps were
skipped (thresholds in :mod:`.thresholds`).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from .._findings import Finding
from . import rounded
from .thresholds import COLLAPSE_HALVINGS, CRITICAL_SCALE, SKIPPED_FRACTION, SKIPPED_WINDOW


@dataclasses.dataclass
class ScalerHistory:
    """The recorded ``amp_skipped`` and ``amp_scale`` scalars of a run."""

    steps: np.ndarray
    skipped: np.ndarray
    scale_steps: np.ndarray
    scales: np.ndarray

    @property
    def skipped_steps(self) -> np.ndarray:
        return self.steps[self.skipped > 0]

    def halvings(self) -> float:
        r""":math:`\log_2(S_0 / S_\text{last})` over the finite positive scales (0 without any)."""
        good = self.scales[np.isfinite(self.scales)]
        if good.size < 2:
            return 0.0
        first, last = good[0], good[-1]
        if first <= 0:
            return 0.0
        return math.inf if last <= 0 else float(np.log2(first / last))

    def recent_skipped_fraction(self) -> float | None:
        """The fraction of the last ``SKIPPED_WINDOW`` steps skipped (None before that many)."""
        if self.skipped.size < SKIPPED_WINDOW:
            return None
        return float(np.mean(self.skipped[-SKIPPED_WINDOW:] > 0))

    def collapsed(self) -> bool:
        """The persistent case: the scale fell by more than ``2^10``, or most recent steps skipped."""
        fraction = self.recent_skipped_fraction()
        return self.halvings() > COLLAPSE_HALVINGS or (
            fraction is not None and fraction > SKIPPED_FRACTION
        )


def collapse_finding(history: ScalerHistory) -> Finding | None:
    """The ``amp_scale_collapse`` finding when the scale collapsed (layers left empty), else None."""
    if not history.collapsed():
        return None
    halvings = history.halvings()
    fraction = history.recent_skipped_fraction()
    good = history.scales[np.isfinite(history.scales)]
    evidence: dict = {
        "skipped_steps": int((history.skipped > 0).sum()),
        "steps": int(history.skipped.size),
        "first_skipped_step": int(history.skipped_steps[0]) if history.skipped_steps.size else None,
        "advice": "train in bfloat16 (torch.autocast(dtype=torch.bfloat16)), which needs no loss scaling",
    }
    if good.size:
        evidence.update(
            scale_start=rounded(good[0]),
            scale_last=rounded(good[-1]),
            scale_min=rounded(good.min()),
            halvings=rounded(halvings) if math.isfinite(halvings) else "inf",
        )
    if fraction is not None:
        evidence.update(skipped_fraction_recent=rounded(fraction), window=SKIPPED_WINDOW)
    stalled = fraction is not None and fraction >= 1.0
    tiny = good.size > 0 and good[-1] < CRITICAL_SCALE
    severity = "critical" if stalled or tiny else "warning"
    parts = []
    if good.size and halvings > COLLAPSE_HALVINGS:
        parts.append(f"the loss scale fell from {good[0]:.4g} to {good[-1]:.4g}")
    if fraction is not None and fraction > SKIPPED_FRACTION:
        parts.append(f"{fraction:.0%} of the last {SKIPPED_WINDOW} steps were skipped")
    message = (
        f"GradScaler keeps skipping steps: {' and '.join(parts)}. The gradients overflow float16 "
        "even at a small scale (or are NaN); lower the learning rate, clip the gradient norm after "
        "scaler.unscale_(), or train in bfloat16."
    )
    return Finding(
        "amp_scale_collapse", severity, [], _first_collapse_step(history), evidence, message
    )


def _first_collapse_step(history: ScalerHistory) -> int | None:
    finite = np.isfinite(history.scales) & (history.scales > 0)
    if finite.any():
        start = history.scales[finite][0]
        fell = np.nonzero(finite & (history.scales < start / 2.0**COLLAPSE_HALVINGS))[0]
        fell = fell if fell.size else np.nonzero(history.scales <= 0)[0]
        if fell.size:
            return int(history.scale_steps[fell[0]])
    window = history.steps[-SKIPPED_WINDOW:][history.skipped[-SKIPPED_WINDOW:] > 0]
    return int(window[0]) if window.size else None


__all__ = ["ScalerHistory", "collapse_finding"]
