"""The Guard's interventions marked on a loss curve: a line per rollback, a tick per skip or clip."""

from __future__ import annotations

from typing import Any

from ..monitor._guard_events import guard_events

STYLE = {  # event kind -> (line style, label)
    "guard_skipped": (":", "Guard: update skipped"),
    "guard_clipped": (":", "Guard: spike clipped"),
    "guard_rollback": ("--", "Guard: rolled back"),
    "guard_gave_up": ("-", "Guard: gave up"),
}


def draw_guard_events(ax: Any, events: list[dict[str, Any]], color: str) -> None:
    """Draw Guard events (:func:`guard_events`) on ``ax``: vertical lines at their steps."""
    labelled = set()
    for event in events:
        style, label = STYLE.get(event["kind"], (":", event["kind"]))
        rollback = event["kind"] in ("guard_rollback", "guard_gave_up")
        ax.axvline(event["step"], color=color, linestyle=style, linewidth=1.2 if rollback else 0.6,
                   alpha=0.8 if rollback else 0.4, label=None if label in labelled else label)  # fmt: skip
        labelled.add(label)


__all__ = ["draw_guard_events", "guard_events"]
