"""Unit-level findings: saturated activations and dead rectifier units."""

from __future__ import annotations

import numpy as np

from .._modules import RECTIFIER, SATURATING
from ..views import RunView
from . import thresholds as T
from ._common import persistent_steps, plural, rounded
from .findings import Finding


def _fraction_findings(
    view: RunView, stat: str, family: str, warn: float, critical: float, majority_only: bool = False
):
    if stat not in view.modules.stats:
        return None
    layers = view.modules_in(family, view.modules.names)
    hits = {}
    for layer in layers:
        column = view.modules.column(stat, layer)
        holds = [bool(np.isfinite(v) and v >= warn) for v in column]
        if majority_only and sum(holds) * 2 <= len(holds):
            continue
        step = persistent_steps(view.modules.steps, holds)
        if step is not None:
            hits[layer] = (step, column)
    if not hits:
        return None
    first_step = min(step for step, _ in hits.values())
    worst = max(float(np.nanmax(col)) for _, col in hits.values())
    last = {layer: rounded(float(col[np.isfinite(col)][-1])) for layer, (_, col) in hits.items()}
    severity = "critical" if worst >= critical else "warning"
    return list(hits), first_step, last, worst, severity


def saturation_findings(view: RunView, context: dict) -> list[Finding]:
    """``saturated_activations``: bounded activations with most outputs at their bounds."""
    found = _fraction_findings(
        view, "act_saturated", SATURATING, T.SATURATED_FRACTION, T.CRITICAL_SATURATED_FRACTION
    )
    if found is None:
        return []
    layers, step, last, worst, severity = found
    means = {layer: rounded(float(view.modules.column("act_mean", layer)[-1])) for layer in layers}
    verb = "is" if len(layers) == 1 else "are"
    message = (
        f"{plural(len(layers), 'bounded activation layer')} {verb} saturated: up to "
        f"{100 * worst:.0f}% of the outputs of {', '.join(layers[:3])} sit within 1% of their "
        "bounds, where the derivative is nearly 0."
    )
    evidence = {"saturated_fraction": last, "act_mean": means, "worst": rounded(worst)}
    return [Finding("saturated_activations", severity, layers, step, evidence, message)]


def dead_unit_findings(view: RunView, context: dict) -> list[Finding]:
    """``dead_units``: rectifier units that output exactly 0 for every sample of the batch."""
    # units matter when they stay dead: most recorded steps, not only the initial state
    found = _fraction_findings(
        view, "act_dead", RECTIFIER, T.DEAD_FRACTION, T.CRITICAL_DEAD_FRACTION, majority_only=True
    )
    if found is None:
        return []
    layers, step, last, worst, severity = found
    message = (
        f"Dead units: up to {100 * worst:.0f}% of the units of {', '.join(layers[:3])} output 0 for every "
        "sample, so no gradient flows through them."
    )
    return [
        Finding(
            "dead_units",
            severity,
            layers,
            step,
            {"dead_fraction": last, "worst": rounded(worst)},
            message,
        )
    ]
