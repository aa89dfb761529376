"""Small helpers shared by the detectors."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .._signals import plural, rounded  # noqa: F401  (the detectors read them here)


def persistent_steps(steps: np.ndarray, holds: Sequence[bool]) -> int | None:
    """The first step where a condition holds, if it holds at the first recorded step or at
    most recorded steps (a transient blip is not a finding); else None."""
    holds = list(holds)
    if not holds:
        return None
    if holds[0] or sum(holds) * 2 > len(holds):
        return int(steps[holds.index(True)])
    return None


def per_layer(names: Sequence[str], values: Sequence[float]) -> dict[str, float]:
    return {n: rounded(float(v)) for n, v in zip(names, values, strict=True)}


def severity_for(decades: float, critical_decades: float) -> str:
    return "critical" if abs(decades) >= critical_decades else "warning"


def geometric_fit(values: np.ndarray) -> tuple[float, float]:
    """Least-squares slope of log10(values) over their index, and the overall ratio last/first.

    Returns:
        ``(decades_per_layer, log10(last / first))``; NaN when fewer than two positive values.
    """
    values = np.asarray(values, dtype=np.float64)
    keep = np.isfinite(values) & (values > 0)
    if keep.sum() < 2:
        return float("nan"), float("nan")
    index = np.arange(len(values))[keep]
    logs = np.log10(values[keep])
    slope = float(np.polyfit(index, logs, 1)[0])
    return slope, float(logs[-1] - logs[0])
