"""The Monitor's lifetime: close (every hook removed, the run flushed), reopen for reading, context manager."""

from __future__ import annotations

import contextlib
from typing import Any

from ..store import Run, open_run


class Lifetime:
    """Mixin of :class:`~graddoctor.Monitor`: what ends a run and what reads it back."""

    def close(self) -> None:
        """Flush, remove every hook, free the weight copy and close the run file."""
        if self.closed:
            return
        try:
            self._remove_hooks()
            self.probes.release()
            self.flush()
        finally:
            self.writer.close()
            self.closed = True

    def _remove_hooks(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def run(self) -> Run:
        """Flush and open the run file for reading (on the recording rank)."""
        if not self.recording:
            raise RuntimeError(
                f"rank {self.layout.rank} records nothing: rank 0 writes {self.path}; "
                "open it there (check mon.recording first)"
            )
        if not self.closed:
            self.flush()
        return open_run(self.path)

    def _check_open(self) -> None:
        if self.closed:
            raise RuntimeError(f"this Monitor is closed; its run is in {self.path}")

    def __enter__(self) -> Any:
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        if exc is not None and not self.closed:
            with contextlib.suppress(Exception):  # recording the crash must never hide it
                payload = {"type": exc_type.__name__, "message": str(exc)}
                self.writer.add_event(self.step_index, "exception", payload)
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"step {self.step_index}"
        return f"Monitor({str(self.path)!r}, {state})"


__all__ = ["Lifetime"]
