"""The statistics of one column group of a run (parameters or modules), aligned on steps."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# (steps [S], column names, values [S, len(names)])
Series = tuple[np.ndarray, list[str], np.ndarray]


@dataclass(frozen=True)
class StatGroup:
    """The statistics of one column group (parameters or modules), recorded at the same steps.

    Attributes:
        steps: ``[S]`` recorded steps.
        names: the columns (parameter or module names).
        stats: statistic -> ``[S, len(names)]`` values (NaN where not measured).
    """

    steps: np.ndarray
    names: list[str]
    stats: dict[str, np.ndarray]

    def column(self, stat: str, name: str) -> np.ndarray:
        """One column of a statistic over the steps."""
        return self.stats[stat][:, self.names.index(name)]

    def without_steps(self, steps: np.ndarray) -> StatGroup:
        """The same group with the rows at ``steps`` left out."""
        keep = ~np.isin(self.steps, steps)
        return StatGroup(self.steps[keep], self.names, {k: v[keep] for k, v in self.stats.items()})


__all__ = ["Series", "StatGroup"]
