"""Medians and quantiles over sliding windows of a series, computed for every index at once.

The step-axis detectors compare each recorded step with the steps before it; a Python loop
over 20,000 steps costs seconds, the same windows as one ``[n, window]`` view cost
milliseconds. Each result is the value ``np.median`` (or ``np.quantile``) gives on that
window's slice.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def running_median(values: np.ndarray, window: int, begin: int = 0) -> np.ndarray:
    """The median of the last ``window`` values at each index from ``begin`` (fewer at the start).

    Args:
        values: ``[n]``.
        window: how many values, the current one included (at least 1).
        begin: the first index wanted: a caller that keeps the earlier medians (a live
            detector, commit after commit) pays only for the new ones.

    Returns:
        ``[n - begin]`` float64: ``np.median(values[max(0, i - window + 1) : i + 1])`` at
        each ``i >= begin``.
    """
    values = np.asarray(values, dtype=np.float64)
    window = max(int(window), 1)
    begin = min(max(int(begin), 0), values.size)
    out = np.empty(values.size - begin)
    short = range(begin, min(window - 1, values.size))  # the first windows are shorter
    for i in short:
        out[i - begin] = np.median(values[: i + 1])
    first_full = max(begin, window - 1)
    if values.size > first_full:
        tail = values[first_full - window + 1 :]
        out[first_full - begin :] = np.median(sliding_window_view(tail, window), axis=1)
    return out


def window_statistics(
    values: np.ndarray, window: int, quantile: float
) -> tuple[np.ndarray, np.ndarray]:
    """The ``quantile`` and the median of every full window ``values[start : start + window]``.

    Returns:
        ``(quantiles, medians)``, each ``[n - window + 1]`` (empty when ``n < window``).
    """
    values = np.asarray(values, dtype=np.float64)
    if values.size < window:
        return np.zeros(0), np.zeros(0)
    windows = sliding_window_view(values, window)
    return np.quantile(windows, quantile, axis=1), np.median(windows, axis=1)


__all__ = ["running_median", "window_statistics"]
