"""The step-axis detectors as pure functions of arrays: one implementation, two callers.

The offline diagnosis (``graddoctor.diagnosis``: ``steps``, ``loss``, ``amp``,
``nonfinite``) reads the arrays from a recorded run; the Monitor's live findings
(``monitor.live``) and the training Guard (``monitor.guard``) feed them the values of the
steps committed so far. Each test can resume where the previous call stopped (``begin``),
so a live caller scans every step once.

* :mod:`.gradients`: ``exploding_gradients`` over steps, growth by decades and spikes;
* :mod:`.loss`: ``diverging_loss``, a rising loss or updates as large as the weights;
* :mod:`.amp`: ``amp_scale_collapse``, GradScaler's loss scale falling for good;
* :mod:`.thresholds`: their numbers, each with its source.
"""

from __future__ import annotations

import numpy as np


def rounded(value: float, digits: int = 4) -> float:
    """A float rounded to ``digits`` significant digits (for readable evidence)."""
    if value is None or not np.isfinite(value) or value == 0:
        return float(value) if value is not None else float("nan")
    return float(f"{value:.{digits}g}")


def plural(count: int, word: str) -> str:
    """``"1 step"``, ``"2 steps"``: a count with its noun, pluralised with an s."""
    return f"{count} {word}{'' if count == 1 else 's'}"


def first_index(bad: np.ndarray) -> int | None:
    """The index of the first True in ``bad``, or None."""
    index = np.flatnonzero(bad)
    return int(index[0]) if index.size else None


def nan_measured(weights: np.ndarray) -> np.ndarray:
    """Per step ``[S, P] -> [S]``: a NaN weight norm among measured ones (a NaN weight).

    An infinite norm may be the overflow of huge finite weights (exploding, not yet
    non-finite), and an all-NaN row was not measured, so neither counts.
    """
    return np.any(np.isnan(weights), axis=1) & ~np.all(np.isnan(weights), axis=1)


__all__ = ["first_index", "nan_measured", "plural", "rounded"]
