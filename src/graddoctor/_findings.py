"""A Finding: one named problem, the layers it concerns and the numbers that show it.

The type lives this low so that the Monitor can name findings while training runs
(``monitor.live``) with the same type the diagnosis of a recorded run returns
(``graddoctor.diagnosis``, which re-exports it with the list of kinds).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

SEVERITIES = ("info", "warning", "critical")


@dataclass
class Finding:
    """One named problem, the layers it concerns and the numbers that show it."""

    kind: str
    severity: str
    layers: list[str]
    first_step: int | None
    evidence: dict[str, Any]
    message: str
    remedies: list[str] = field(default_factory=list)
    source: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(f"severity must be one of {SEVERITIES}, got {self.severity!r}")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (non-finite numbers become strings "nan", "inf")."""
        return jsonable(asdict(self))


def jsonable(value: Any) -> Any:
    """``value`` with non-finite floats as ``"nan"``/``"inf"``/``"-inf"`` and numpy scalars as Python's."""
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return value
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if hasattr(value, "item"):  # numpy scalars
        return jsonable(value.item())
    return value


class GradDoctorWarning(UserWarning):
    """A finding reported while training runs (``Monitor`` live findings, the ``Guard``)."""


__all__ = ["SEVERITIES", "Finding", "GradDoctorWarning", "jsonable"]
