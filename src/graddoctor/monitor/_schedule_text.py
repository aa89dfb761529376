"""A Monitor's schedule in words: what ``graddoctor show`` prints of ``meta["schedule"]`` (no torch)."""

from __future__ import annotations

from typing import Any


def describe_every(value: Any) -> str:
    """A schedule given as ``every=`` in words: ``"every step"``, ``"every 5 steps"``, ``"never"``, ``"custom (f)"``."""
    if value is None or value == 0:
        return "never"
    if isinstance(getattr(value, "description", None), str):  # a schedule that says what it is
        return value.description
    if isinstance(value, int) and not isinstance(value, bool):
        return "every step" if value == 1 else f"every {value} steps"
    return f"custom ({getattr(value, '__name__', type(value).__name__)})"


def _intervals(history: Any, what: str) -> str:
    if isinstance(history, str):
        return f"{what} {history}"
    first, *later = history
    words = describe_every(first[1])
    if not later:
        return f"{what} {words}"
    last = later[-1]
    return f"{what} {describe_every(last[1])} from step {last[0]} ({words} before)"


def describe_schedule(schedule: dict[str, Any] | None) -> str | None:
    """One line on a run's recorded schedule (``meta["schedule"]``), or None for a run without one."""
    if not isinstance(schedule, dict):
        return None
    try:
        parts = [
            f"gradients {schedule.get('gradients', 'every step')}",
            _intervals(
                schedule.get("weights", "with the gradients"), "max |g|, weights and updates"
            ),
            _intervals(schedule.get("activations", "never"), "activations"),
        ]
        budget, overhead = schedule.get("budget"), schedule.get("overhead")
        if budget is None:
            parts.append("no overhead budget")
        else:
            measured = "" if overhead is None else f", measured {100 * overhead:.1f}%"
            parts.append(f"budget {100 * budget:g}% of the step{measured}")
    except (TypeError, ValueError, IndexError, KeyError):
        return None
    return "schedule: " + "; ".join(parts)


__all__ = ["describe_every", "describe_schedule"]
