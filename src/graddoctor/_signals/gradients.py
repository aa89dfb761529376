r"""``exploding_gradients`` over training steps: growth by decades, and spikes (Pascanu et al. 2013).

Two tests on the total gradient norm :math:`\|g_t\|` of each recorded step:

* **growth**: :math:`\|g_t\| / \|g_{t_0}\| \ge` ``EXPLODING_STEP_GROWTH`` from the first
  finite positive norm :math:`t_0`, or an infinite norm (critical);
* **spike**: :math:`\|g_t\| > k \cdot \mathrm{median}(\|g\|_{\text{last } w})` over the last
  :math:`w` finite norms before it, once there are ``SPIKE_MIN_HISTORY`` of them (the
  "cliffs" of Pascanu et al. 2013, fig. 6; a warning).

The Guard's spike policy asks :func:`is_spike` the same question, with its own ``k``, ``w``.
"""

from __future__ import annotations

import numpy as np

from .._findings import Finding
from .._windows import running_median
from . import plural, rounded
from .thresholds import EXPLODING_STEP_GROWTH, SPIKE_FACTOR, SPIKE_MEDIAN_WINDOW, SPIKE_MIN_HISTORY


def is_spike(
    value: float,
    history: np.ndarray,
    factor: float = SPIKE_FACTOR,
    min_history: int = SPIKE_MIN_HISTORY,
) -> tuple[bool, float]:
    r"""Whether ``value`` exceeds ``factor`` times the median of ``history``.

    .. math:: \|g_t\| > k \cdot \mathrm{median}(h)

    Args:
        value: the step's gradient norm (finite).
        history: the finite norms of the window before it (the caller keeps the window).
        factor: :math:`k`.
        min_history: fewer values than this and nothing is a spike.

    Returns:
        ``(spike, median)``; the median is NaN without enough history.
    """
    if len(history) < min_history:
        return False, float("nan")
    median = float(np.median(history))
    return bool(median > 0 and value > factor * median), median


def first_growth(total: np.ndarray, begin: int = 0) -> tuple[int, int] | None:
    """The first step whose norm grew ``EXPLODING_STEP_GROWTH`` times over the first finite one, or is infinite.

    Args:
        total: the total gradient norm per recorded step (Inf: non-finite entries).
        begin: the first index to test (a live caller resumes where it stopped).

    Returns:
        ``(index of the first finite positive norm, index of the growth)`` or None.
    """
    finite = np.isfinite(total) & (total > 0)
    if not finite.any():
        return None
    start = int(np.argmax(finite))
    later = np.arange(len(total)) > max(start, begin - 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        grew = np.isinf(total) | (finite & (total / total[start] >= EXPLODING_STEP_GROWTH))
    hit = np.flatnonzero(grew & later)
    return (start, int(hit[0])) if hit.size else None


def first_spike(
    total: np.ndarray, begin: int = 0, window: int = SPIKE_MEDIAN_WINDOW
) -> tuple[int, float, float] | None:
    """The first recorded step whose finite norm is a spike over the finite norms before it.

    Args:
        total: the total gradient norm per recorded step.
        begin: the first index to test.
        window: the running median's window (the last ``window`` finite norms).

    Returns:
        ``(index, norm, running median)`` or None.
    """
    finite = np.flatnonzero(np.isfinite(total))
    if finite.size <= SPIKE_MIN_HISTORY:
        return None
    before = np.arange(finite.size)  # finite norms before each finite index
    candidates = (finite >= max(begin, SPIKE_MIN_HISTORY)) & (before >= SPIKE_MIN_HISTORY)
    index, count = finite[candidates], before[candidates]
    if not index.size:
        return None
    # medians[c - 1 - first]: the median of the last `window` of the first c finite norms,
    # from the first candidate's on (a live caller's earlier steps are not recomputed)
    first = int(count[0]) - 1
    medians = running_median(total[finite], window, first)
    median = medians[count - 1 - first]
    hits = np.flatnonzero((median > 0) & (total[index] > SPIKE_FACTOR * median))
    if not hits.size:
        return None
    i, hit = int(index[hits[0]]), int(hits[0])
    return i, float(total[i]), float(median[hit])


def gradient_step_finding(
    total: np.ndarray, steps: np.ndarray, growth: tuple[int, int] | None, spike: tuple | None
) -> Finding | None:
    """The ``exploding_gradients`` finding of a growth (critical) or else a spike (warning); layers left empty.

    Args:
        total, steps: the total gradient norm of each recorded step, and the step numbers.
        growth: :func:`first_growth`'s result; spike: :func:`first_spike`'s.
    """
    if growth is not None:
        first, i = growth
        start, reached = total[first], total[i]
        evidence = {
            "axis": "steps",
            "grad_norm_start": rounded(start),
            "grad_norm_reached": rounded(reached),
            "growth": rounded(reached / start) if np.isfinite(reached) else "inf",
            "from_step": int(steps[first]),
            "steps_taken": int(steps[i] - steps[first]),
        }
        window = total[first : i + 1]
        window = window[np.isfinite(window) & (window > 0)]
        if window.size >= 2:
            evidence["factor_per_step"] = rounded(
                (window[-1] / window[0]) ** (1.0 / max(len(window) - 1, 1))
            )
        message = (
            f"The total gradient norm grew from {evidence['grad_norm_start']:.3g} to "
            f"{evidence['grad_norm_reached']:.3g} within {plural(evidence['steps_taken'], 'step')}."
        )
        return Finding("exploding_gradients", "critical", [], int(steps[i]), evidence, message)
    if spike is None:
        return None
    i, value, median = spike
    step = int(steps[i])
    evidence = {
        "axis": "steps",
        "spike": rounded(value),
        "running_median": rounded(median),
        "factor": rounded(value / median),
    }
    message = f"The gradient norm spiked to {value:.3g} at step {step}, {value / median:.0f}x its running median."
    return Finding("exploding_gradients", "warning", [], step, evidence, message)


__all__ = ["first_growth", "first_spike", "gradient_step_finding", "is_spike"]
