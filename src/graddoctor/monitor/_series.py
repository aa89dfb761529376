"""A 1-D numpy array that grows at its end: what the live detectors keep of a run.

Appending is amortised O(1) and :attr:`Series.values` is a view of what was appended, so a
commit costs the same at step 100 and at step 100,000 (lists turned into arrays at each
commit cost time in the length of the run).
"""

from __future__ import annotations

from typing import Any

import numpy as np


class Series:
    """Values appended one by one or a batch at a time, read as one array.

    Args:
        dtype: the array's dtype.
    """

    def __init__(self, dtype: Any = np.float64) -> None:
        self._data = np.empty(64, dtype=dtype)
        self.size = 0

    def _reserve(self, extra: int) -> None:
        if self.size + extra > self._data.size:
            grown = np.empty(max(2 * self._data.size, self.size + extra), dtype=self._data.dtype)
            grown[: self.size] = self._data[: self.size]
            self._data = grown

    def append(self, value: Any) -> None:
        self._reserve(1)
        self._data[self.size] = value
        self.size += 1

    def extend(self, values: Any) -> None:
        values = np.asarray(values, dtype=self._data.dtype).reshape(-1)
        self._reserve(values.size)
        self._data[self.size : self.size + values.size] = values
        self.size += values.size

    @property
    def values(self) -> np.ndarray:
        """The values so far (a view: read it again after the next append)."""
        return self._data[: self.size]

    def __len__(self) -> int:
        return self.size


__all__ = ["Series"]
