r"""``diverging_loss``: the training loss rising well above where it started or had got to.

Gradient descent on a quadratic with largest curvature :math:`L` diverges once the
learning rate passes :math:`2/L` (LeCun et al. 1998, "Efficient BackProp"): each step
overshoots and the loss rises instead of falling. Adam's step does not shrink with the
gradient, so a learning rate far too large shows as updates as large as the weights,

.. math:: r_t = \frac{\|\theta_{t+1} - \theta_t\|}{\|\theta_t\|} \gg 10^{-3},

where a healthy run keeps :math:`r_t` near :math:`10^{-3}`. Three tests, each over a
window of ``LOSS_WINDOW`` consecutive recorded losses (thresholds in :mod:`.thresholds`):

* **above the start**: 80% of the window above ``DIVERGING_LOSS_FACTOR`` times the first loss;
* **above the minimum**: 80% of the window above ``DIVERGING_FROM_MIN_FACTOR`` times the
  lowest 5-step median reached before it, having given back half of the progress made;
* **update ratio**: the 5-step median of :math:`r_t` above ``DIVERGING_UPDATE_RATIO`` for
  ``DIVERGING_UPDATE_STEPS`` consecutive steps.

The first two also need the window's median to clear the loss's own step-to-step noise
(median :math:`|L_t - L_{t-1}|` of the losses given) ``LOSS_NOISE_MARGIN`` times over:
batches of different difficulty are not a divergence, and a spike that comes back down
lasts too few steps. Live, the noise is that of the losses so far.
"""

from __future__ import annotations

import numpy as np

from .. import _windows
from .._findings import Finding
from . import rounded
from . import thresholds as T


def running_median(values: np.ndarray, window: int, begin: int = 0) -> np.ndarray:
    """The median of the last ``window`` values at each index from ``begin`` (fewer at the start)."""
    return _windows.running_median(values, window, begin)


def rising_window(
    losses: np.ndarray, begin: int = 1, medians: np.ndarray | None = None
) -> tuple[int, str, float] | None:
    """The first window from ``begin`` where the loss sits well above a reference.

    Args:
        losses: the finite losses, in step order.
        begin: the first window start to test (>= 1).
        medians: ``running_median(losses, LOSS_MEDIAN_WINDOW)`` if the caller keeps it.

    Returns:
        ``(window start, "above_start" | "above_minimum", reference loss)`` or None.
    """
    n, w = len(losses), T.LOSS_WINDOW
    if n < w + 1 or n - w + 1 <= max(begin, 1):
        return None
    noise = float(np.median(np.abs(np.diff(losses))))
    if medians is None:
        medians = running_median(losses, T.LOSS_MEDIAN_WINDOW)
    first = float(losses[0])
    # every window from begin at once: window k is losses[k : k + w]
    starts = np.arange(max(begin, 1), n - w + 1)
    lows, middles = _windows.window_statistics(losses[starts[0] :], w, T.LOSS_WINDOW_QUANTILE)
    above_start = (
        (first > 0)
        & (lows > T.DIVERGING_LOSS_FACTOR * first)
        & (middles > first + T.LOSS_NOISE_MARGIN * noise)
    )
    # the lowest 5-step median before each start (defined from start LOSS_MEDIAN_WINDOW)
    lowest = np.full(starts.size, np.nan)
    running_low = np.minimum.accumulate(np.asarray(medians)[T.LOSS_MEDIAN_WINDOW - 1 :])
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


def large_updates(ratios: np.ndarray, medians: np.ndarray | None = None) -> tuple[int, int] | None:
    """The first run of ``DIVERGING_UPDATE_STEPS`` steps whose 5-step median ratio is huge.

    Args:
        ratios: the total update ratio of each recorded step (NaN: not recorded, read as 0).
        medians: their running medians, if the caller keeps them.

    Returns:
        ``(first index, length)`` or None.
    """
    if medians is None:
        medians = running_median(np.where(np.isfinite(ratios), ratios, 0.0), T.LOSS_MEDIAN_WINDOW)
    run = T.DIVERGING_UPDATE_STEPS
    above = (np.asarray(medians) > T.DIVERGING_UPDATE_RATIO).astype(np.int64)
    if above.size < run:
        return None
    full = np.flatnonzero(np.convolve(above, np.ones(run, dtype=np.int64), "valid") == run)
    return (int(full[0]), run) if full.size else None


def _trajectory(steps: np.ndarray, losses: np.ndarray, points: int = 12) -> dict[str, float]:
    """About ``points`` losses spread over the run, keyed by step."""
    index = np.unique(np.linspace(0, len(losses) - 1, min(points, len(losses))).round().astype(int))
    return {str(int(steps[i])): rounded(float(losses[i])) for i in index}


def _lr_evidence(lr: tuple[np.ndarray, np.ndarray] | None, step: int) -> dict[str, float]:
    if lr is None:
        return {}
    steps, lrs = lr
    at = np.nonzero(steps <= step)[0]
    return {
        "lr": rounded(float(lrs[at[-1] if at.size else 0])),
        "lr_max": rounded(float(np.nanmax(lrs))),
    }


def loss_finding(
    steps: np.ndarray,
    losses: np.ndarray,
    ratio_steps: np.ndarray,
    ratios: np.ndarray,
    rising: tuple[int, str, float] | None,
    large: tuple[int, int] | None,
    lr: tuple[np.ndarray, np.ndarray] | None = None,
) -> Finding | None:
    """The ``diverging_loss`` finding of a rising window or a run of large updates, or None.

    Args:
        steps, losses: the finite losses and their steps.
        ratio_steps, ratios: the total update ratio of each recorded parameter step.
        rising: :func:`rising_window`'s result; large: :func:`large_updates`'.
        lr: ``(steps, lrs)`` of the first param group's learning rate, if recorded.
    """
    if rising is None and large is None:
        return None
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
    evidence.update(_lr_evidence(lr, first_step))
    if "lr" in evidence:
        message += f", at learning rate {evidence['lr']:.3g}"
        if evidence["lr_max"] > 1.01 * evidence["lr"]:
            message += f" (up to {evidence['lr_max']:.3g} in the run)"
    message += ". The learning rate is too high for this model: the steps overshoot."
    if steps.size:
        evidence["loss_trajectory"] = _trajectory(steps, losses)
    return Finding("diverging_loss", severity, [], first_step, evidence, message)


__all__ = ["large_updates", "loss_finding", "rising_window", "running_median"]
