r"""Clipping that hides exploding gradients.

Norm clipping (Pascanu, Mikolov & Bengio 2013) caps the gradient norm at a threshold
:math:`c`. Set near the usual norm it rescales the rare cliffs; firing on most steps, it
rescales every step, and gradients read after it have norm :math:`c` whatever they were.
Two records show it (scalar names in :mod:`graddoctor.probes.clipping`):

* the clip's own scalars (``clip/fired``, ``clip/threshold``, and the norm before the clip,
  ``clip/total_norm``, or gradients the Monitor read before the clip): the clip fired on
  more than ``CLIP_FIRED_FRACTION`` of the steps, on norms a median ``CLIP_HIDING_FACTOR``
  times the threshold or more: ``exploding_gradients`` (warning), "clipping is hiding
  exploding gradients"; with smaller norms, an ``info`` finding;
* without them, gradient norms recorded after the clip sit at one value on most steps
  (``PINNED_NORM_TOLERANCE``): an ``info`` finding saying the clip fired on most steps and
  the norms before it were not recorded.
"""

from __future__ import annotations

import numpy as np

from ..probes.clipping import CLIP_FIRED, CLIP_THRESHOLD, CLIP_TOTAL_NORM
from ..views import RunView
from . import thresholds as T
from ._common import rounded
from .findings import Finding


def _scalar(view: RunView, name: str) -> tuple[np.ndarray, np.ndarray]:
    if not view.has_scalar(name):
        return np.zeros(0, dtype=np.int64), np.zeros(0)
    return view.scalars(name)


def _norms_before_clip(view: RunView, fired_steps: np.ndarray) -> np.ndarray:
    """The gradient norm before the clip at the steps it fired: the clip's own record, else
    the Monitor's (read before the clip when the clip scalars were recorded)."""
    steps, norms = _scalar(view, CLIP_TOTAL_NORM)
    if not steps.size:
        steps, norms = view.params.steps, view.total_grad_norm()
    return norms[np.isin(steps, fired_steps) & np.isfinite(norms)]


def _recorded_clip(view: RunView) -> list[Finding] | None:
    steps, fired = _scalar(view, CLIP_FIRED)
    if not steps.size:
        return None
    fraction = float(np.mean(fired))
    if fraction <= T.CLIP_FIRED_FRACTION:
        return []
    _, thresholds = _scalar(view, CLIP_THRESHOLD)
    threshold = float(np.median(thresholds)) if thresholds.size else float("nan")
    before = _norms_before_clip(view, steps[fired > 0])
    evidence = {
        "axis": "steps",
        "clipped": True,
        "clip_fired_fraction": rounded(fraction),
        "clip_threshold": rounded(threshold),
    }
    message = (
        f"Gradient clipping (threshold {threshold:.3g}) fired on {100 * fraction:.0f}% of the steps"
    )
    if not before.size or not threshold > 0:
        return [Finding("exploding_gradients", "info", [], int(steps[0]), evidence, message + ".")]
    median, largest = float(np.median(before)), float(np.max(before))
    factor = median / threshold
    evidence.update(
        grad_norm_before_clip_median=rounded(median),
        grad_norm_before_clip_max=rounded(largest),
        factor_over_threshold=rounded(factor),
    )
    first = int(steps[np.argmax(fired > 0)])
    if factor >= T.CLIP_HIDING_FACTOR:
        message = (
            f"Clipping is hiding exploding gradients: {message.lower()}, where the gradient norm before it "
            f"was a median of {median:.3g} ({factor:.0f}x the threshold, up to {largest:.3g})."
        )
        return [Finding("exploding_gradients", "warning", [], first, evidence, message)]
    message += f", on gradient norms a median {factor:.2g}x the threshold: it rescales most steps a little."
    return [Finding("exploding_gradients", "info", [], first, evidence, message)]


def _pinned_norms(view: RunView) -> list[Finding]:
    total = view.total_grad_norm()
    finite = total[np.isfinite(total) & (total > 0)]
    if finite.size < T.PINNED_MIN_STEPS:
        return []
    ceiling = float(np.max(finite))
    pinned = np.abs(finite - ceiling) <= T.PINNED_NORM_TOLERANCE * ceiling
    fraction = float(np.mean(pinned))
    if fraction <= T.CLIP_FIRED_FRACTION:
        return []
    first = int(
        view.params.steps[
            np.nonzero(
                np.isfinite(total) & (np.abs(total - ceiling) <= T.PINNED_NORM_TOLERANCE * ceiling)
            )[0][0]
        ]
    )
    evidence = {
        "axis": "steps",
        "clipped": True,
        "pinned_grad_norm": rounded(ceiling),
        "pinned_fraction": rounded(fraction),
        "measured": "after clipping",
    }
    message = (
        f"The gradient norm was {ceiling:.3g} on {100 * fraction:.0f}% of the steps: the training loop clips "
        f"the gradients to norm {ceiling:.3g} before the optimizer step, and the clip fired on most steps. "
        "The norms recorded are after the clip, so how large the gradients were is hidden; log the norm "
        f"the clip returns as {CLIP_TOTAL_NORM!r} to see it."
    )
    return [Finding("exploding_gradients", "info", [], first, evidence, message)]


def clipping_findings(view: RunView, context: dict) -> list[Finding]:
    """Clipping that fired on most steps, from the clip's scalars or from pinned gradient norms."""
    recorded = _recorded_clip(view)
    return recorded if recorded is not None else _pinned_norms(view)
