"""``diverging_loss`` of a recorded run: the tests of :mod:`graddoctor._signals.loss` on its losses and update ratios."""

from __future__ import annotations

import numpy as np

from .._signals.loss import large_updates, loss_finding, rising_window, running_median
from ..views import RunView
from .findings import Finding

LR_SCALAR = "lr/0"


def finite_losses(view: RunView) -> tuple[np.ndarray, np.ndarray]:
    """The recorded losses up to the first non-finite one: ``(steps, losses)``."""
    if not view.has_scalar("loss"):
        return np.zeros(0, dtype=np.int64), np.zeros(0)
    steps, losses = view.scalars("loss")
    bad = ~np.isfinite(losses)
    end = int(np.argmax(bad)) if bad.any() else len(losses)
    return steps[:end], losses[:end]


def loss_findings(view: RunView, context: dict) -> list[Finding]:
    """``diverging_loss``: the loss rising for a window of steps, or updates as large as the weights."""
    steps, losses = finite_losses(view)
    ratios, ratio_steps = view.total_update_ratio(), view.params.steps
    if ratios.size == ratio_steps.size:  # steps whose weights were thinned hold no ratio
        kept = ~np.isnan(ratios)
        ratios, ratio_steps = ratios[kept], ratio_steps[kept]
    lr = view.scalars(LR_SCALAR) if view.has_scalar(LR_SCALAR) else None
    finding = loss_finding(
        steps, losses, ratio_steps, ratios, rising_window(losses), large_updates(ratios), lr
    )
    return [] if finding is None else [finding]


__all__ = ["LR_SCALAR", "finite_losses", "loss_findings", "running_median"]
