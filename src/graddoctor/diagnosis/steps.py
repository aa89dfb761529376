"""Exploding gradients over training steps: geometric growth and spikes (Pascanu et al. 2013)."""

from __future__ import annotations

import numpy as np

from .._signals.gradients import first_growth, first_spike, gradient_step_finding
from ..views import RunView
from .findings import Finding


def step_findings(view: RunView, context: dict) -> list[Finding]:
    """``exploding_gradients`` when the total gradient norm grows by decades or spikes
    (the tests of :mod:`graddoctor._signals.gradients`, which the live findings run too)."""
    total = view.total_grad_norm()
    steps = view.params.steps
    if total.size < 2:
        return []
    growth = first_growth(total)
    finding = gradient_step_finding(total, steps, growth, None if growth else first_spike(total))
    if finding is None:
        return []
    finding.layers = _largest_layers(view, finding.first_step)
    return [finding]


def _largest_layers(view: RunView, step: int, count: int = 3) -> list[str]:
    """The modules with the largest gradient norm at ``step`` (the ones that explode most)."""
    index = np.nonzero(view.params.steps == step)[0]
    if not index.size:
        return []
    grouped = view.layer_grad_norm(int(index[0]))
    ranked = sorted(grouped.items(), key=lambda kv: -kv[1] if np.isfinite(kv[1]) else -np.inf)
    return [name for name, _ in ranked[:count]]
