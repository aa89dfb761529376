r"""``diverging_loss``: the training loss rising well above where it started or had got to.

Gradient descent on a quadratic with largest curvature :math:`L` diverges once the
learning rate passes :math:`2/L` (LeCun et al. 1998, "Efficient BackProp"): each step
overshoots and the loss rises instead of falling. Adam's step does not shrink with the
gradient, so a learning rate far too large shows as updates as large as the weights,

.. math:: r_t = \frac{\|\theta_{t+1} - \theta_t\|}{\|\theta_t\|} \gg 10^{-3},

where a healthy run keeps :math:`r_t` near :math:`10^{-3}`. Three tests, each over a
window of ``LOSS_WINDOW`` consecutive recorded losses (thresholds in
:mod:`graddoctor.diagnosis.thresholds`):

* **above the start**: 80% of the window above ``DIVERGING_LOSS_FACTOR`` times the first loss;
* **above the minimum**: 80% of the window above ``DIVERGING_FROM_MIN_FACTOR`` times the
  lowest 5-step median reached before it, having given back half of the progress made;
* **update ratio**: the 5-step median of :math:`r_t` above ``DIVERGING_UPDATE_RATIO`` for
  ``DIVERGING_UPDATE_STEPS`` consecutive steps.

The first two also need the window's median to clear the loss's own step-to-step noise
(median :math:`|L_t - L_{t-1}|`) ``LOSS_NOISE_MARGIN`` times over: batches of different
difficulty are not a divergence, and a spike that comes back down lasts too few steps.
"""

from __future__ import annotations

import numpy as np

from .. import _windows
from ..views import RunView
from . import thresholds as T
from ._common import rounded
from .findings import Finding

LR_SCALAR = "lr/0"


def running_median(values: np.ndarray, window: int) -> np.ndarray:
    """The median of the last ``window`` values at each index (fewer at the start)."""
    return _windows.running_median(values, window)


def finite_losses(view: RunView) -> tuple[np.ndarray, np.ndarray]:
    """The recorded losses up to the first non-finite one: ``(steps, losses)``."""
    if not view.has_scalar("loss"):
        return np.zeros(0, dtype=np.int64), np.zeros(0)
    steps, losses = view.run.scalars("loss")
    bad = ~np.isfinite(losses)
    end = int(np.argmax(bad)) if bad.any() else len(losses)
    return steps[:end], losses[:end]


def _rising_window(losses: np.ndarray) -> tuple[int, str, float] | None:
    """The first window where the loss sits well above a reference: ``(start, test, reference)``."""
    n, w = len(losses), T.LOSS_WINDOW
    if n < w + 1:
        return None
    noise = float(np.median(np.abs(np.diff(losses))))
    medians = running_median(losses, T.LOSS_MEDIAN_WINDOW)
    first = float(losses[0])
    # every window at once: window k is losses[k : k + w]; the loop starts at 1
    lows, middles = _windows.window_statistics(losses, w, T.LOSS_WINDOW_QUANTILE)
    lows, middles, starts = lows[1:], middles[1:], np.arange(1, n - w + 1)
    above_start = (
        (first > 0)
        & (lows > T.DIVERGING_LOSS_FACTOR * first)
        & (middles > first + T.LOSS_NOISE_MARGIN * noise)
    )
    # the lowest 5-step median before each start (defined from start LOSS_MEDIAN_WINDOW)
    lowest = np.full(starts.size, np.nan)
    running_low = np.minimum.accumulate(medians[T.LOSS_MEDIAN_WINDOW - 1 :])
    late = starts >= T.LOSS_MEDIAN_WINDOW
    lowest[late] = running_low[starts[late] - T.LOSS_MEDIAN_WINDOW]
    progress = first - lowest
    with np.errstate(invalid="ignore"):
        above_minimum = (
            late
            & (lowest > 0)
            & (progress > 0)
            & (lows > T.DIVERGING_FROM_MIN_FACTOR * lowest)
            & (lows - lowest > T.GIVEN_BACK_FRACTION * progress)
            & (middles > lowest + T.LOSS_NOISE_MARGIN * noise)
        )
    hits = np.flatnonzero(above_start | above_minimum)
    if not hits.size:
        return None
    k = int(hits[0])
    if above_start[k]:
        return int(starts[k]), "above_start", first
    return int(starts[k]), "above_minimum", float(lowest[k])


def _large_updates(ratios: np.ndarray) -> tuple[int, int] | None:
    """The first run of ``DIVERGING_UPDATE_STEPS`` steps whose 5-step median ratio is huge:
    ``(first index, length)``."""
    finite = np.where(np.isfinite(ratios), ratios, 0.0)
    above = running_median(finite, T.LOSS_MEDIAN_WINDOW) > T.DIVERGING_UPDATE_RATIO
    length = 0
    for i, hit in enumerate(above):
        length = length + 1 if hit else 0
        if length == T.DIVERGING_UPDATE_STEPS:
            return i - length + 1, length
    return None


def _trajectory(steps: np.ndarray, losses: np.ndarray, points: int = 12) -> dict[str, float]:
    """About ``points`` losses spread over the run, keyed by step."""
    index = np.unique(np.linspace(0, len(losses) - 1, min(points, len(losses))).round().astype(int))
    return {str(int(steps[i])): rounded(float(losses[i])) for i in index}


def _lr_evidence(view: RunView, step: int) -> dict[str, float]:
    if not view.has_scalar(LR_SCALAR):
        return {}
    steps, lrs = view.run.scalars(LR_SCALAR)
    at = np.nonzero(steps <= step)[0]
    return {
        "lr": rounded(float(lrs[at[-1] if at.size else 0])),
        "lr_max": rounded(float(np.nanmax(lrs))),
    }


def loss_findings(view: RunView, context: dict) -> list[Finding]:
    """``diverging_loss``: the loss rising for a window of steps, or updates as large as the weights."""
    steps, losses = finite_losses(view)
    rising = _rising_window(losses)
    ratios, ratio_steps = view.total_update_ratio(), view.params.steps
    if ratios.size == ratio_steps.size:  # steps whose weights were thinned hold no ratio
        kept = ~np.isnan(ratios)
        ratios, ratio_steps = ratios[kept], ratio_steps[kept]
    large = _large_updates(ratios)
    if rising is None and large is None:
        return []
    evidence: dict = {"axis": "steps"}
    if ratios.size and np.isfinite(ratios).any():
        smoothed = running_median(np.where(np.isfinite(ratios), ratios, 0.0), T.LOSS_MEDIAN_WINDOW)
        peak = int(np.argmax(smoothed))
        evidence.update(
            update_ratio_max=rounded(float(smoothed[peak])),
            update_ratio_max_step=int(ratio_steps[peak]),
            usual_update_ratio=T.USUAL_UPDATE_RATIO,
        )
    if rising is not None:
        start, test, reference = rising
        window = losses[start : start + T.LOSS_WINDOW]
        middle = float(np.median(window))
        first_step = int(steps[start])
        evidence.update(
            test=test,
            loss_start=rounded(float(losses[0])),
            loss_reference=rounded(reference),
            window=[first_step, int(steps[start + T.LOSS_WINDOW - 1])],
            loss_window_median=rounded(middle),
            rise=rounded(middle / reference),
            loss_min=rounded(float(np.min(losses))),
            loss_last=rounded(float(losses[-1])),
        )
        where = "its first value" if test == "above_start" else "the lowest it had reached"
        message = (
            f"The loss rose to a median of {middle:.3g} over steps {first_step}-{evidence['window'][1]}, "
            f"{middle / reference:.2g}x {where} ({reference:.3g})"
        )
        severity = "critical" if middle >= T.CRITICAL_LOSS_FACTOR * reference else "warning"
    else:
        first_index, length = large
        first_step = int(ratio_steps[first_index])
        evidence.update(test="update_ratio", steps_above=length)
        message = (
            f"For {length} steps from step {first_step} each update changed the weights by more than "
            f"{T.DIVERGING_UPDATE_RATIO:g} of their norm"
        )
        severity = "warning"
    if "update_ratio_max" in evidence and evidence["update_ratio_max"] > T.DIVERGING_UPDATE_RATIO:
        message += (
            f"; the updates reached {evidence['update_ratio_max']:.2g} of the weights "
            f"(about {T.USUAL_UPDATE_RATIO:g} is usual)"
        )
    evidence.update(_lr_evidence(view, first_step))
    if "lr" in evidence:
        message += f", at learning rate {evidence['lr']:.3g}"
        if evidence["lr_max"] > 1.01 * evidence["lr"]:
            message += f" (up to {evidence['lr_max']:.3g} in the run)"
    message += ". The learning rate is too high for this model: the steps overshoot."
    if steps.size:
        evidence["loss_trajectory"] = _trajectory(steps, losses)
    return [Finding("diverging_loss", severity, [], first_step, evidence, message)]
