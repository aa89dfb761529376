"""Vanishing/exploding gradients over time in recurrent layers (Pascanu et al. 2013, eq. 7).

``time_grad_norm:<module>`` holds ||dLoss/dx_t|| for each time step t of the layer's
input: the product of Jacobians dh_T/dh_t scales it like (gamma_W gamma_h)^(T-t).
"""

from __future__ import annotations

import numpy as np

from ..views import RunView
from . import thresholds as T
from ._common import persistent_steps, rounded
from .findings import Finding


def time_findings(view: RunView, context: dict) -> list[Finding]:
    """``vanishing_gradients`` / ``exploding_gradients`` with ``evidence["axis"] = "time"``."""
    findings = []
    for module, stat in view.time_gradient_stats().items():
        steps, _, values = view.series(stat)
        ratios = []
        for row in values:
            row = row[np.isfinite(row)]
            ok = row.size >= T.MIN_TIME_STEPS and row[-1] > 0
            ratios.append(float(row[0] / row[-1]) if ok else float("nan"))
        for kind, holds in (
            ("vanishing_gradients", [r < T.VANISHING_TIME_RATIO for r in ratios]),
            ("exploding_gradients", [r > T.EXPLODING_TIME_RATIO for r in ratios]),
        ):
            step = persistent_steps(steps, holds)
            if step is None:
                continue
            i = list(steps).index(step)
            row = values[i][np.isfinite(values[i])]
            per_step = ratios[i] ** (1.0 / max(len(row) - 1, 1)) if ratios[i] > 0 else 0.0
            decades = abs(np.log10(ratios[i])) if ratios[i] > 0 else float("inf")
            evidence = {
                "axis": "time",
                "module": module,
                "time_steps": int(row.size),
                "ratio_first_to_last": rounded(ratios[i]),
                "factor_per_time_step": rounded(per_step),
                "grad_first_step": rounded(float(row[0])),
                "grad_last_step": rounded(float(row[-1])),
                "step": step,
            }
            evidence.update(context.get("spectra", {}).get(module, {}))
            word = "vanish" if kind == "vanishing_gradients" else "explode"
            message = (
                f"Gradients {word} over time in {module}: the first of {row.size} time steps receives "
                f"{ratios[i]:.2g} of the gradient the last one does (x{per_step:.3g} per step)."
            )
            severity = "critical" if decades >= T.CRITICAL_DEPTH_DECADES else "warning"
            findings.append(Finding(kind, severity, [module], step, evidence, message))
    return findings
