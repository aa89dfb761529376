"""What a non-finite replay reports: the events it saw and the origin it names."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

DIRECTIONS = ("parameter", "forward", "loss", "backward")


@dataclass(frozen=True)
class _Place:
    """Where a non-finite tensor was seen (module, type, direction, which tensor) and its counts."""

    module: str
    module_type: str
    direction: str
    what: str
    nan_count: int
    inf_count: int


@dataclass(frozen=True)
class NonfiniteEvent(_Place):
    r"""One non-finite tensor seen during the replay.

    ``index`` is the position of the check in execution order (parameters, then module
    forward completions, the loss, then autograd nodes in backward order); ``op`` names
    the autograd node for backward events (e.g. ``"SqrtBackward0"``), else ``""``.
    """

    index: int
    op: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The event as a JSON-ready dict."""
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class NonfiniteReport(_Place):
    r"""Where NaN/Inf started, and every non-finite event seen (up to ``max_events``).

    ``module`` is the dotted name from ``model.named_modules()`` (``""`` for the model
    itself and for the loss), ``direction`` one of :data:`DIRECTIONS`.
    """

    events: tuple[NonfiniteEvent, ...]
    op: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The report as a JSON-ready dict (events as a list of dicts)."""
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        fields["events"] = [event.to_dict() for event in self.events]
        return fields


__all__ = ["DIRECTIONS", "NonfiniteEvent", "NonfiniteReport"]
