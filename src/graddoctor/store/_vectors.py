"""Rows of a run file to numpy arrays in a few vectorised operations, checked as the reader checks one row.

A statistic's rows of full length (every column stored, the common case) are joined and
reshaped at once, float32 rows apart from float64 ones (:mod:`._blob`); only shorter
rows (a time group that grew) are decoded one by one. Steps and scalar values are
checked by type once per column of the query, not once per row.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ._blob import FLOAT64_TAG
from ._schema import RunFileError
from ._validate import check_integer, check_real, vector

# a series may be this many times larger in memory than the values the file stores (time
# groups: shorter early sequences), or this many cells, whichever is larger
DENSE_FACTOR, DENSE_CELLS = 64, 2**22


def integers(path: Path, table: str, values: list[Any]) -> np.ndarray:
    """Steps read from ``table`` as int64; RunFileError if one is not an integer."""
    if not set(map(type, values)) <= {int}:
        for value in values:
            check_integer(path, table, value)
    return np.fromiter(values, dtype=np.int64, count=len(values))


def reals(path: Path, name: str, values: list[Any]) -> np.ndarray:
    """A scalar's values as float64 (NULL as NaN); RunFileError if one is not a number."""
    if not set(map(type, values)) <= {int, float}:
        values = [check_real(path, name, value) for value in values]
    return np.fromiter(values, dtype=np.float64, count=len(values))


def stat_matrix(
    path: Path, stat: str, rows: list[tuple[Any, Any]], size: int
) -> tuple[np.ndarray, np.ndarray]:
    """``(steps [S], values [S, size])`` of a statistic's ``(step, blob)`` rows (NaN where not stored).

    Raises:
        RunFileError: a step that is not an integer, a value that is not a blob of a
            length a writer writes (naming its step), or far fewer bytes stored than the
            columns declared (a crafted file that would fill memory).
    """
    blobs = [r[1] for r in rows]
    if not set(map(type, blobs)) <= {bytes} or not set(map(type, (r[0] for r in rows))) <= {int}:
        for step, blob in rows:
            vector(path, stat, step, blob, size)
    steps = integers(path, "stats", [r[0] for r in rows])
    lengths = np.fromiter(map(len, blobs), dtype=np.int64, count=len(blobs))
    stored = int(lengths.sum())
    if len(rows) * size > max(DENSE_FACTOR * stored / 4, DENSE_CELLS):
        raise RunFileError(
            f"{path}: {stat!r} declares {size} columns over {len(rows)} steps but stores "
            f"only {stored} bytes: not a file graddoctor writes"
        )
    values = np.full((len(rows), size), np.nan, dtype=np.float64)
    narrow = np.flatnonzero(lengths == 4 * size) if size else np.zeros(0, dtype=np.int64)
    wide = np.flatnonzero(lengths == 8 * size + len(FLOAT64_TAG))
    wide = wide[[blobs[i].endswith(FLOAT64_TAG) for i in wide]]
    if narrow.size:
        joined = b"".join([blobs[i] for i in narrow])
        values[narrow] = np.frombuffer(joined, dtype=np.float32).reshape(-1, size)
    if wide.size:
        joined = b"".join([blobs[i][: -len(FLOAT64_TAG)] for i in wide])
        values[wide] = np.frombuffer(joined, dtype=np.float64).reshape(-1, size)
    done = np.zeros(len(rows), dtype=bool)
    done[narrow], done[wide] = True, True
    for i in np.flatnonzero(~done):  # shorter rows, and the malformed ones vector() names
        vec = vector(path, stat, int(steps[i]), blobs[i], size)
        values[i, : len(vec)] = vec
    return steps, values


__all__ = ["integers", "reals", "stat_matrix"]
