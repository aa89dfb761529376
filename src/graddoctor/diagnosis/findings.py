"""Findings and the Diagnosis that holds them, with a stable JSON schema.

JSON schema ``graddoctor.diagnosis/2``::

    {
      "schema": "graddoctor.diagnosis/2",
      "status": "healthy" | "findings" | "insufficient_data",
      "healthy": bool,                 # status == "healthy"
      "insufficient_data": [str],      # why the run cannot be called healthy (empty when it can)
      "limits": [str],                 # what the records did not allow to check
      "run_path": str | null,
      "model": str | null,             # the model's class name
      "steps": int,                    # training steps recorded
      "summary": str,                  # one sentence
      "findings": [
        {"kind": str, "severity": "info" | "warning" | "critical",
         "layers": [str], "first_step": int | null, "evidence": {str: number | str | list},
         "message": str, "remedies": [str],
         "source": {"module": str, "direction": "forward" | "backward" | "loss" | "parameter" | "input",
                    "step": int, "localised": bool} | null}
      ],
      "guard": {"counts": {kind: int}, "events": [{"step": int, "kind": str, ...}]}  # only when a Guard acted
    }

Version 2 added ``status``, ``insufficient_data`` and ``limits``: ``healthy`` is true only when the
run holds the evidence to judge it (see :mod:`graddoctor.diagnosis.evidence`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from .._findings import SEVERITIES, Finding
from .._findings import jsonable as _jsonable  # experiment reads it here too

SCHEMA = "graddoctor.diagnosis/2"
# the verdict of a diagnosis, and the exit code of ``graddoctor checkup/diagnose`` for it
# (2 is taken: bad input)
STATUSES = ("healthy", "findings", "insufficient_data")
EXIT_CODES = {"healthy": 0, "findings": 1, "insufficient_data": 3}
# the finding kinds, in report order: the one list of them (scenarios, remedies and the
# report read it from here)
KINDS = (
    "nonfinite",
    "diverging_loss",
    "exploding_gradients",
    "vanishing_gradients",
    "exploding_activations",
    "vanishing_activations",
    "saturated_activations",
    "dead_units",
    "amp_scale_collapse",
)
# where a vanishing or exploding signal runs, in ``evidence["axis"]``: over the layers,
# over the time steps of a recurrent layer, or over training steps
AXES = ("depth", "time", "steps")


@dataclass
class Diagnosis:
    """The findings of one run, most severe first."""

    findings: list[Finding]
    run_path: str | None = None
    model: str | None = None
    steps: int = 0
    extra: dict[str, Any] = field(default_factory=dict)
    insufficient: list[str] = field(default_factory=list)
    limits: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        order = {s: i for i, s in enumerate(reversed(SEVERITIES))}
        self.findings.sort(
            key=lambda f: (
                order[f.severity],
                KINDS.index(f.kind) if f.kind in KINDS else len(KINDS),
            )
        )

    @property
    def status(self) -> str:
        """``"findings"`` (a warning or critical finding), ``"insufficient_data"`` (nothing
        found, but the run lacks the evidence to call it healthy) or ``"healthy"``."""
        if any(f.severity in ("warning", "critical") for f in self.findings):
            return "findings"
        return "insufficient_data" if self.insufficient else "healthy"

    @property
    def healthy(self) -> bool:
        """True when no finding is a warning or critical and the evidence sufficed."""
        return self.status == "healthy"

    @property
    def exit_code(self) -> int:
        """0 healthy, 1 findings, 3 insufficient data (:data:`EXIT_CODES`)."""
        return EXIT_CODES[self.status]

    def kinds(self, min_severity: str = "warning") -> list[str]:
        """The kinds found at or above a severity, in report order, without repeats."""
        floor = SEVERITIES.index(min_severity)
        seen: list[str] = []
        for f in self.findings:
            if SEVERITIES.index(f.severity) >= floor and f.kind not in seen:
                seen.append(f.kind)
        return seen

    def of_kind(self, kind: str) -> list[Finding]:
        return [f for f in self.findings if f.kind == kind]

    @property
    def summary(self) -> str:
        guard = self.extra.get("guard")
        if guard:
            done = ", ".join(
                f"{n} {k.removeprefix('guard_').replace('_', ' ')}"
                for k, n in guard["counts"].items()
            )
            return self._verdict_summary + f" The Guard intervened: {done}."
        return self._verdict_summary

    @property
    def _verdict_summary(self) -> str:
        if self.status == "insufficient_data":
            return "Not enough evidence to judge the run: " + "; ".join(self.insufficient) + "."
        if self.healthy:
            return (
                "No diverging loss, vanishing or exploding gradients, saturation, dead units "
                "or NaN/Inf found."
            )
        return "Found: " + ", ".join(k.replace("_", " ") for k in self.kinds()) + "."

    def remedies(self) -> list[str]:
        """Recommended remedy ids over all findings, most severe finding first, no repeats."""
        ordered: list[str] = []
        for f in self.findings:
            if f.severity == "info":
                continue
            ordered += [r for r in f.remedies if r not in ordered]
        return ordered

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "status": self.status,
            "healthy": self.healthy,
            "insufficient_data": list(self.insufficient),
            "limits": list(self.limits),
            "run_path": self.run_path,
            "model": self.model,
            "steps": self.steps,
            "summary": self.summary,
            "findings": [f.to_dict() for f in self.findings],
            **({"guard": _jsonable(self.extra["guard"])} if "guard" in self.extra else {}),
        }

    def to_json(self, indent: int | None = 2) -> str:
        """The stable JSON form (schema ``graddoctor.diagnosis/2``)."""
        return json.dumps(self.to_dict(), indent=indent)

    def __rich__(self):
        from .._render_diagnosis import render_diagnosis

        return render_diagnosis(self)
