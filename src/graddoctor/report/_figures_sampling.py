"""Long series thinned for drawing: at most ``MAX_POINTS`` per line, spikes kept.

A figure is about 900 pixels wide, so 20,000 steps draw no more detail than 1,000 bins,
and a heatmap about 450 pixels high, so 2,000 layers draw no more than 500 rows.
A line keeps, for each bin of consecutive recorded steps, its smallest and its largest
value at their own steps (the min/max envelope), so a one-step spike or dip is still
drawn at its height; a heatmap keeps each bin's largest value (of steps, and of
consecutive layers). Series of up to
``MAX_POINTS`` are drawn as they are. Non-finite steps are marked from the full series by
the figures, never from the thinned one.
"""

from __future__ import annotations

import numpy as np

MAX_POINTS = 1_000  # a line's points after thinning: 500 bins of a min and a max
MAX_COLUMNS = 1_000  # a heatmap's columns after thinning
MAX_ROWS = 500  # a heatmap's rows (layers) after thinning
MAX_MARKS = 2_000  # markers drawn one by one; more are drawn as one shape
MAX_LINES = 64  # lines of one figure; more layers are drawn evenly spaced in depth


def _bins(count: int, bins: int) -> np.ndarray:
    """Start index of each of ``bins`` runs of consecutive rows covering ``count`` rows."""
    return np.unique(np.linspace(0, count, bins, endpoint=False).astype(np.int64))


def envelope(
    steps: np.ndarray, values: np.ndarray, max_points: int = MAX_POINTS
) -> tuple[np.ndarray, np.ndarray]:
    """A line's ``(steps, values)`` thinned to its min/max envelope (as it is when short enough).

    Args:
        steps: ``[S]`` recorded steps, increasing.
        values: ``[S]`` the line's values; NaN is a gap (a bin of NaN only stays NaN).
        max_points: the most points returned.

    Returns:
        ``(steps, values)``: per bin the step and value of its minimum and of its maximum,
        in step order (one point when they coincide).
    """
    keep = envelope_index(values, max_points)
    return np.asarray(steps)[keep], np.asarray(values, dtype=np.float64)[keep]


def envelope_index(values: np.ndarray, max_points: int = MAX_POINTS) -> np.ndarray:
    """The rows :func:`envelope` keeps of ``values`` ``[S]``: every row when ``S <= max_points``."""
    values = np.asarray(values, dtype=np.float64)
    if values.size <= max_points:
        return np.arange(values.size)
    starts = _bins(values.size, max(max_points // 2, 1))
    label = np.repeat(np.arange(starts.size), np.diff(np.append(starts, values.size)))
    low = _arg_extreme(label, starts, np.where(np.isnan(values), np.inf, values), np.minimum)
    high = _arg_extreme(label, starts, np.where(np.isnan(values), -np.inf, values), np.maximum)
    return np.unique(np.concatenate([low, high]))


def _arg_extreme(
    label: np.ndarray, starts: np.ndarray, values: np.ndarray, ufunc: np.ufunc
) -> np.ndarray:
    """Index of the first row of each bin that holds the bin's extreme (``ufunc`` reduced)."""
    extreme = ufunc.reduceat(values, starts)
    hits = np.flatnonzero(values == extreme[label])
    first = np.full(starts.size, -1, dtype=np.int64)
    first[label[hits][::-1]] = hits[::-1]  # the last assignment wins: the first hit
    return np.where(first >= 0, first, starts)


def spread(count: int, max_lines: int = MAX_LINES) -> np.ndarray:
    """Indices of at most ``max_lines`` of ``count`` layers, evenly spaced, first and last included."""
    if count <= max_lines:
        return np.arange(count)
    return np.unique(np.linspace(0, count - 1, max_lines).round().astype(np.int64))


def shown_note(shown: int, count: int) -> str:
    """``"; 64 of 2,000 layers drawn, evenly spaced in depth"`` when layers were left out."""
    return f"; {shown} of {count:,} layers drawn, evenly spaced in depth" if shown < count else ""


def bin_columns(
    steps: np.ndarray, max_columns: int = MAX_COLUMNS
) -> tuple[np.ndarray, np.ndarray] | None:
    """How a heatmap's steps are grouped when there are more than ``max_columns``.

    Returns:
        ``(starts, edges)``: the first row of each group, and the ``len(starts) + 1``
        column edges (half-way between the recorded steps on either side of a group);
        None when the steps are drawn one column each.
    """
    steps = np.asarray(steps, dtype=np.float64)
    if steps.size <= max_columns:
        return None
    starts = _bins(steps.size, max_columns)
    middle = (steps[starts[1:]] + steps[starts[1:] - 1]) / 2
    first = steps[0] - (steps[1] - steps[0]) / 2
    last = steps[-1] + (steps[-1] - steps[-2]) / 2
    return starts, np.concatenate([[first], middle, [last]])


def bin_rows(count: int, max_rows: int = MAX_ROWS) -> tuple[np.ndarray, np.ndarray] | None:
    """How a heatmap's ``count`` rows (layers) are grouped when there are more than ``max_rows``.

    Returns:
        ``(starts, edges)``: the first row of each group, and the ``len(starts) + 1`` row
        edges in row units (a group spans its rows); None when each row is drawn.
    """
    if count <= max_rows:
        return None
    starts = _bins(count, max_rows)
    return starts, np.append(starts, count).astype(np.float64)


def column_max(values: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """The largest value of each group of rows, ``[S, M] -> [len(starts), M]``; NaN where all are NaN."""
    filled = np.where(np.isnan(values), -np.inf, values)
    out = np.maximum.reduceat(filled, starts, axis=0)
    unset = np.logical_and.reduceat(np.isnan(values), starts, axis=0)
    out[unset] = np.nan
    return out


__all__ = [
    "MAX_COLUMNS",
    "MAX_LINES",
    "MAX_MARKS",
    "MAX_POINTS",
    "MAX_ROWS",
    "shown_note",
    "spread",
    "bin_columns",
    "bin_rows",
    "column_max",
    "envelope",
    "envelope_index",
]
