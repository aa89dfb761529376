"""Exploding gradients over training steps: geometric growth and spikes (Pascanu et al. 2013)."""

from __future__ import annotations

import numpy as np

from .._windows import running_median
from ..views import RunView
from . import thresholds as T
from ._common import plural, rounded
from .findings import Finding


def step_findings(view: RunView, context: dict) -> list[Finding]:
    """``exploding_gradients`` when the total gradient norm grows by decades or spikes."""
    total = view.total_grad_norm()
    steps = view.params.steps
    if total.size < 2:
        return []
    finite = np.isfinite(total) & (total > 0)
    growth_step, evidence = None, {}
    if finite.any():
        first_index = int(np.argmax(finite))
        start = total[first_index]
        for i in range(first_index + 1, len(total)):
            grew = not np.isfinite(total[i]) and not np.isnan(total[i])
            if grew or (finite[i] and total[i] / start >= T.EXPLODING_STEP_GROWTH):
                growth_step = int(steps[i])
                reached = total[i]
                evidence = {
                    "axis": "steps",
                    "grad_norm_start": rounded(start),
                    "grad_norm_reached": rounded(reached),
                    "growth": rounded(reached / start) if np.isfinite(reached) else "inf",
                    "from_step": int(steps[first_index]),
                    "steps_taken": int(steps[i] - steps[first_index]),
                }
                window = total[first_index : i + 1]
                window = window[np.isfinite(window) & (window > 0)]
                if window.size >= 2:
                    per_step = (window[-1] / window[0]) ** (1.0 / max(len(window) - 1, 1))
                    evidence["factor_per_step"] = rounded(per_step)
                break
    spike = _first_spike(total, steps)
    findings = []
    if growth_step is not None:
        message = (
            f"The total gradient norm grew from {evidence['grad_norm_start']:.3g} to "
            f"{evidence['grad_norm_reached']:.3g} within {plural(evidence['steps_taken'], 'step')}."
        )
        findings.append(
            Finding(
                "exploding_gradients",
                "critical",
                _largest_layers(view, growth_step),
                growth_step,
                evidence,
                message,
            )
        )
    elif spike is not None:
        step, value, median = spike
        findings.append(
            Finding(
                "exploding_gradients",
                "warning",
                _largest_layers(view, step),
                step,
                {
                    "axis": "steps",
                    "spike": rounded(value),
                    "running_median": rounded(median),
                    "factor": rounded(value / median),
                },
                f"The gradient norm spiked to {value:.3g} at step {step}, {value / median:.0f}x its running median.",
            )
        )
    return findings


def _first_spike(total: np.ndarray, steps: np.ndarray):
    """The first finite norm over ``SPIKE_FACTOR`` times the median of the last finite norms before it."""
    finite = np.flatnonzero(np.isfinite(total))
    if finite.size <= T.SPIKE_MIN_HISTORY:
        return None
    # medians[c - 1]: the median of the last SPIKE_MEDIAN_WINDOW of the first c finite norms
    medians = running_median(total[finite], T.SPIKE_MEDIAN_WINDOW)
    before = np.arange(finite.size)  # finite norms before each finite index
    candidates = (finite >= T.SPIKE_MIN_HISTORY) & (before >= T.SPIKE_MIN_HISTORY)
    index, count = finite[candidates], before[candidates]
    median = medians[count - 1]
    hits = np.flatnonzero((median > 0) & (total[index] > T.SPIKE_FACTOR * median))
    if not hits.size:
        return None
    i, hit = int(index[hits[0]]), int(hits[0])
    return int(steps[i]), float(total[i]), float(median[hit])


def _largest_layers(view: RunView, step: int, count: int = 3) -> list[str]:
    """The modules with the largest gradient norm at ``step`` (the ones that explode most)."""
    index = np.nonzero(view.params.steps == step)[0]
    if not index.size:
        return []
    grouped = view.layer_grad_norm(int(index[0]))
    ranked = sorted(grouped.items(), key=lambda kv: -kv[1] if np.isfinite(kv[1]) else -np.inf)
    return [name for name, _ in ranked[:count]]
