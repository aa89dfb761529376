"""The Guard's events in a run file: their kinds, and reading them back.

No torch: ``graddoctor show``, the diagnosis and the report read them from a recorded run.
"""

from __future__ import annotations

from typing import Any

EVENTS = ("guard_skipped", "guard_clipped", "guard_rollback", "guard_gave_up")


def guard_events(run: Any) -> list[dict[str, Any]]:
    """The Guard's events of a recorded run (an ``open_run`` result), in the order they happened."""
    return [event for event in run.events() if event["kind"] in EVENTS]


__all__ = ["EVENTS", "guard_events"]
