"""Live findings: the step-axis detectors run on each committed batch of steps, while training runs.

The Monitor moves its statistics to the host once per commit (``monitor._pending``); the
values of that batch are handed here too, so reading them costs no transfer of its own.
Each commit runs the tests of :mod:`graddoctor._signals` (the ones the diagnosis of a
recorded run uses) on the steps so far, resuming where the previous commit stopped:
``nonfinite``, ``exploding_gradients`` (growth by decades, or a spike), ``diverging_loss``
and ``amp_scale_collapse``. A finding is reported once per kind and severity: a
:class:`~graddoctor.GradDoctorWarning`, a record on the ``logging`` logger ``"graddoctor"``,
and the Monitor's ``on_finding`` callable. Live, the loss's noise level is that of the
losses so far, and a step GradScaler skipped is left out (the diagnosis does the same
while the skips stay transient). NaN/Inf is looked for at every commit; on a long run the
other tests wait until 0.1% more steps are recorded (:data:`RELATIVE_DETECTION_DELAY`).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from .._findings import Finding, GradDoctorWarning
from .._signals import first_index, nan_measured
from .._signals.amp import ScalerHistory, collapse_finding
from .._signals.gradients import first_growth, first_spike, gradient_step_finding
from .._signals.loss import large_updates, loss_finding, rising_window, running_median
from .._signals.thresholds import LOSS_MEDIAN_WINDOW, LOSS_WINDOW
from ..probes.statistics import PARAMETERS
from ._series import Series

# A test over n recorded steps costs time in n: on a long run the tests other than NaN/Inf
# run again once 0.1% more steps are recorded (each commit up to 25,000 steps, every 100
# steps at 100,000), so their cost per step stays flat.
RELATIVE_DETECTION_DELAY = 0.001

logger = logging.getLogger("graddoctor")
logger.addHandler(logging.NullHandler())  # a library logs; the application decides where to


def _quadrature(row: np.ndarray) -> float:
    """The norm of norms over the measured (non-NaN) cells; NaN when none was measured."""
    measured = ~np.isnan(row)
    if not measured.any():
        return float("nan")
    with np.errstate(over="ignore"):
        return float(np.sqrt(np.square(row[measured]).sum()))


def _values(series: Any) -> np.ndarray:
    return series.values if isinstance(series, Series) else np.asarray(series)


class LiveFindings:
    """The step-axis findings of a Monitor's steps so far, each reported once.

    Args:
        parameters: the monitored parameters' names (the layers of a finding).
        on_finding: called with each new :class:`~graddoctor.Finding` (in the thread that
            commits: the training loop's, or the run writer's when the loop pauses).
    """

    def __init__(self, parameters: list[str], on_finding: Callable[[Finding], Any] | None = None):
        self.parameters = parameters
        self.on_finding = on_finding
        self.findings: list[Finding] = []
        self._reported: set[tuple[str, str]] = set()
        self._steps = Series(np.int64)  # parameter steps, and per step:
        self._grad = Series()  # the total gradient norm (Inf: non-finite entries)
        self._ratio = Series()  # the total update ratio
        self._nan_weight = Series(bool)
        self._bad_row: tuple[int, np.ndarray] | None = None  # the first step's non-finite counts
        self._scalars: dict[str, tuple[Series, Series]] = {}
        self._skipped: set[int] = set()  # the steps GradScaler skipped
        self._begin = {"growth": 0, "spike": 0, "rise": 1}
        self._next_detection = 0  # recorded steps before the step-axis tests run again
        self._loss_medians = Series()
        self._ratio_medians = Series()

    # -- input: what one commit moved to the host ---------------------------------------
    def scalar(self, step: int, name: str, value: float | None) -> None:
        """A scalar of a step (the loss, ``lr/0``, ``amp_skipped``, ``amp_scale``)."""
        if name in ("loss", "lr/0", "amp_skipped", "amp_scale") and value is not None:
            steps, values = self._scalars.setdefault(name, (Series(np.int64), Series()))
            steps.append(step)
            values.append(float(value))
            if name == "amp_skipped" and float(value) > 0:
                self._skipped.add(step)

    def observe(self, batch: list[tuple[int, str, str, tuple[str, ...], np.ndarray]]) -> None:
        """One commit's ``(step, kind, name, rows, values)`` items, then the detectors; never raises."""
        try:
            for step, kind, name, _, values in batch:
                if kind == "scalar":
                    self.scalar(step, name, float(values[0]))
            skipped = self._skipped
            for step, kind, name, rows, values in batch:
                if kind == "stats" and name == PARAMETERS and step not in skipped:
                    self._parameters(
                        step, dict(zip(rows, values.reshape(len(rows), -1), strict=True))
                    )
            self._detect()
        except Exception as err:  # a live finding is a bonus: the run file is what counts
            warnings.warn(
                f"graddoctor: live findings stopped: {err!r}", RuntimeWarning, stacklevel=2
            )
            self.observe = lambda batch: None  # type: ignore[method-assign]

    def _scalar(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """``(steps, values)`` of a scalar so far (empty arrays if never logged)."""
        steps, values = self._scalars.get(name, (Series(np.int64), Series()))
        return steps.values, values.values

    def _parameters(self, step: int, stats: dict[str, np.ndarray]) -> None:
        grads, counts = stats.get("grad_norm"), stats.get("grad_nonfinite")
        total = _quadrature(grads) if grads is not None else float("nan")
        if counts is not None and np.nansum(counts) > 0:
            total = float("inf")
            self._bad_row = self._bad_row or (step, counts)
        update, weight = stats.get("update_norm"), stats.get("weight_norm")
        ratio = float("nan")
        if update is not None and weight is not None:
            w = _quadrature(weight)
            ratio = _quadrature(update) / w if w > 0 else float("nan")
        self._steps.append(step)
        self._grad.append(total)
        self._ratio.append(ratio)
        self._nan_weight.append(bool(weight is not None and nan_measured(weight[None])[0]))

    # -- the detectors ----------------------------------------------------------------
    def _detect(self) -> None:
        steps, grads = self._steps.values, self._grad.values
        self._nonfinite(steps, grads)
        if len(grads) < self._next_detection:
            return
        self._next_detection = len(grads) + int(len(grads) * RELATIVE_DETECTION_DELAY)
        if len(grads) >= 2 and ("exploding_gradients", "critical") not in self._reported:
            growth = first_growth(grads, self._begin["growth"])
            spike = None
            if growth is None and ("exploding_gradients", "warning") not in self._reported:
                spike = first_spike(grads, self._begin["spike"])
            self._begin["growth"] = self._begin["spike"] = len(grads)
            self._report(gradient_step_finding(grads, steps, growth, spike))
        if ("diverging_loss", "warning") not in self._reported and (
            "diverging_loss", "critical") not in self._reported:  # fmt: skip
            self._diverging(steps)
        amp = self._scalars.get("amp_skipped")
        if amp and not any(kind == "amp_scale_collapse" for kind, _ in self._reported):
            scale_steps, scales = self._scalars.get("amp_scale", ([], []))
            history = ScalerHistory(amp[0].values, amp[1].values,
                                    _values(scale_steps), _values(scales))  # fmt: skip
            self._report(collapse_finding(history))

    def _nonfinite(self, steps: np.ndarray, grads: np.ndarray) -> None:
        if ("nonfinite", "critical") in self._reported:
            return
        firsts = {}
        loss_steps, losses = self._scalar("loss")
        i = first_index(~np.isfinite(losses))
        if i is not None:
            firsts["loss"] = int(loss_steps[i])
        i = first_index(np.isinf(grads))
        if i is not None:
            firsts["gradients"] = int(steps[i])
        i = first_index(self._nan_weight.values)
        if i is not None:
            firsts["weights"] = int(steps[i])
        if not firsts:
            return
        step = min(firsts.values())
        layers = []
        if self._bad_row is not None and self._bad_row[0] == firsts.get("gradients"):
            counts = self._bad_row[1]
            layers = list(dict.fromkeys(n.rpartition(".")[0] or n for n, c in
                                        zip(self.parameters, counts, strict=True) if c > 0))  # fmt: skip
        where = ", ".join(sorted(firsts, key=firsts.get))
        message = f"NaN/Inf first appeared at step {step}, in the {where}"
        message += f" (gradients of {', '.join(layers[:3])})." if layers else "."
        evidence = {f"first_nonfinite_{k}": v for k, v in firsts.items()}
        self._report(Finding("nonfinite", "critical", layers, step, evidence, message))

    def _diverging(self, steps: np.ndarray) -> None:
        loss_steps, losses = self._scalar("loss")
        end = first_index(~np.isfinite(losses))
        losses = losses[:end] if end is not None else losses
        loss_steps = loss_steps[: len(losses)]
        self._loss_medians.extend(
            running_median(losses, LOSS_MEDIAN_WINDOW, len(self._loss_medians))
        )
        ratios = self._ratio.values
        finite = np.where(np.isfinite(ratios), ratios, 0.0)
        self._ratio_medians.extend(
            running_median(finite, LOSS_MEDIAN_WINDOW, len(self._ratio_medians))
        )
        medians = self._loss_medians.values[: len(losses)]
        rising = rising_window(losses, self._begin["rise"], medians)
        self._begin["rise"] = max(1, len(losses) - LOSS_WINDOW + 1)
        large = large_updates(ratios, self._ratio_medians.values)
        lr = self._scalars.get("lr/0")
        lr = (lr[0].values, lr[1].values) if lr else None
        self._report(loss_finding(loss_steps, losses, steps, ratios, rising, large, lr))

    # -- output -----------------------------------------------------------------------
    def _report(self, finding: Finding | None) -> None:
        if finding is None or (finding.kind, finding.severity) in self._reported:
            return
        self._reported.add((finding.kind, finding.severity))
        self.findings.append(finding)
        report(finding, self.on_finding)


def report(finding: Finding, on_finding: Callable[[Finding], Any] | None = None) -> None:
    """Say ``finding`` now: a GradDoctorWarning, the ``graddoctor`` logger, and ``on_finding``."""
    text = f"graddoctor: {finding.kind} ({finding.severity}) at step {finding.first_step}: {finding.message}"
    logger.warning(text)
    warnings.warn(text, GradDoctorWarning, stacklevel=3)
    if on_finding is not None:
        try:
            on_finding(finding)
        except Exception as err:  # the user's callback must not stop training either
            warnings.warn(f"graddoctor: on_finding raised {err!r}", RuntimeWarning, stacklevel=2)


__all__ = ["LiveFindings", "logger", "report"]
