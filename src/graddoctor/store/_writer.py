"""The writer of a run file: rows buffered, checked when added, committed in batches.

Rows are checked when they are added (``ValueError`` to the caller), so a commit never
fails on a row; a failure of the file itself never reaches the caller either (see
:mod:`._file`). Buffered rows are committed every ``commit_every`` steps or
``commit_seconds``, and also on a pause of the caller, at exit and on SIGTERM
(:mod:`._autocommit`).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from . import _autocommit
from ._file import RunFile
from ._rows import check_name, check_scalar, check_step, stat_blob, to_json
from ._schema import FORMAT_NAME, SCHEMA_VERSION
from ._sql import INSERT_META, INSERTS


class RunWriter:
    """Appends records to a run file, committing in batches; a write failure never reaches the caller.

    The file is created exclusively and locked while the writer is open: a second writer on
    the same path fails with ``FileExistsError``, and ``overwrite=True`` refuses a run whose
    writer is still running. If the file cannot be written (disk full, file-size limit), the
    writer warns once, records nothing more (``degraded``) and keeps what was committed.

    Args:
        path: the ``.gdr`` file; parent folders are created. An existing file is an error
            unless ``overwrite=True`` (nothing already recorded is silently lost).
        commit_every: commit after this many buffered steps.
        commit_seconds: commit when this many seconds passed since the last commit, or
            since the caller last added a row (a pause: evaluation, checkpointing).
        overwrite: replace an existing, finished run file.
        meta: metadata written with the file's header; checked before the file is created.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        commit_every: int = 25,
        commit_seconds: float = 2.0,
        overwrite: bool = False,
        meta: dict[str, Any] | None = None,
    ) -> None:
        if commit_every < 1:
            raise ValueError(f"commit_every must be >= 1, got {commit_every}")
        if not commit_seconds >= 0:
            raise ValueError(f"commit_seconds must be >= 0, got {commit_seconds}")
        self.path = Path(path)
        self.commit_every, self.commit_seconds = commit_every, commit_seconds
        self.closed = True  # until the file exists
        header = {**(meta or {}), "format": FORMAT_NAME, "schema_version": SCHEMA_VERSION}
        self._file = RunFile(self.path, overwrite, _meta_rows(header))
        self._lock, self._owner = threading.RLock(), None
        self._stats: list[tuple[int, str, bytes]] = []
        self._scalars: list[tuple[int, str, float | None]] = []
        self._events: list[tuple[int, str, str]] = []
        self._steps_buffered: set[int] = set()
        self._last_commit = self._last_activity = time.monotonic()
        self._groups: dict[str, tuple[str, ...]] = {}
        self._stat_groups: dict[str, str] = {}
        self._collector: Callable[[], None] | None = None
        self._pristine = True  # nothing recorded beyond the header
        self.closed = False
        _autocommit.register(self)
        self._stop = _autocommit.start_pause_commits(self, min(max(commit_seconds / 4, 0.05), 1.0))

    @property
    def error(self) -> BaseException | None:
        """The write failure that stopped the recording, or None."""
        return self._file.error

    @property
    def degraded(self) -> bool:
        """Whether a write failure stopped the recording (``error`` holds it)."""
        return self._file.error is not None

    @property
    def lock(self) -> threading.RLock:
        """Held by every method; hold it while changing what the collector reads."""
        return self._lock

    def set_collector(self, collect: Callable[[], None] | None) -> None:
        """Call ``collect()`` before each commit made on a pause, at exit or on SIGTERM.

        Args:
            collect: adds rows kept elsewhere (e.g. statistics still on the device) with the
                ``add_*`` methods; it runs under :attr:`lock`, maybe on another thread.
        """
        self._collector = collect

    # -- structure -------------------------------------------------------------------
    def set_meta(self, values: dict[str, Any]) -> None:
        """Write metadata keys now (JSON-encoded), in their own transaction.

        Raises:
            ValueError: a value cannot be encoded; nothing is written. If the writer had
                recorded nothing yet, its file is removed and the writer closed, so a
                failed setup leaves no file to block a retry.
        """
        try:
            rows = _meta_rows(values)
        except ValueError as err:
            if self._pristine and not self.closed:
                self.discard()
                raise ValueError(f"{err} (nothing was recorded: {self.path} was removed)") from None
            raise
        self._write_now(INSERT_META, rows)

    def define_group(self, group: str, names: Sequence[str], *, extend: bool = False) -> None:
        """Declare the column names of a statistic group (e.g. parameters, modules).

        Args:
            group: the group's name.
            names: its columns, in order.
            extend: allow a longer list whose start is the known one (time steps).
        """
        group = check_name(group, "group")
        names = tuple(check_name(name, f"a name in group {group!r}") for name in names)
        with self._locked():
            known = self._groups.get(group)
            if known is not None:
                if names[: len(known)] != known or not (extend or len(names) == len(known)):
                    raise ValueError(f"group {group!r} is already defined with other names")
                if len(names) <= len(known):
                    return
            start = 0 if known is None else len(known)
            self._groups[group] = names
            rows = [(group, i, name) for i, name in enumerate(names) if i >= start]
            self._write_now("INSERT OR REPLACE INTO layer_names VALUES (?, ?, ?)", rows)

    def define_stats(self, group: str, stats: Iterable[str]) -> None:
        """Declare that each statistic in ``stats`` is a vector over ``group``."""
        stats = [check_name(stat, "statistic") for stat in stats]
        with self._locked():
            if group not in self._groups:
                raise ValueError(f"define the group {group!r} before its statistics")
            new = [(s, group) for s in stats if self._stat_groups.get(s) != group]
            self._stat_groups.update(new)
            if new:
                self._write_now("INSERT OR REPLACE INTO stat_groups VALUES (?, ?)", new)

    # -- records ---------------------------------------------------------------------
    def add_stat(self, step: int, stat: str, values: Any) -> None:
        """Buffer one statistic vector for ``step`` (ValueError: a bad step or vector)."""
        step = check_step(step)
        with self._locked():
            if stat not in self._stat_groups:
                raise KeyError(f"statistic {stat!r} was not declared with define_stats")
            blob = stat_blob(values, len(self._groups[self._stat_groups[stat]]), stat)
            self._buffer(step, self._stats, (step, stat, blob))

    def add_scalar(self, step: int, name: str, value: float | None) -> None:
        """Buffer one scalar for ``step`` (None or NaN are stored as NULL/NaN)."""
        row = (check_step(step), check_name(name, "scalar name"), check_scalar(value))
        with self._locked():
            self._buffer(row[0], self._scalars, row)

    def add_event(self, step: int, kind: str, payload: dict[str, Any]) -> None:
        """Buffer an event (e.g. a non-finite localisation) for ``step``."""
        if not isinstance(payload, dict):
            raise ValueError(f"an event's payload must be a dict, got {type(payload).__name__}")
        step, kind = check_step(step), check_name(kind, "event kind")
        row = (step, kind, to_json(payload, f"event {kind!r}"))
        with self._locked():
            self._buffer(None, self._events, row)

    def mark_step(self, step: int) -> None:
        """Count ``step`` in the current batch (for callers that buffer rows themselves)."""
        step = check_step(step)
        with self._locked():
            self._buffer(step, None, None)

    def _buffer(self, step: int | None, rows: list | None, row: tuple | None) -> None:
        self._last_activity = time.monotonic()
        if self.closed or not self._file.writable:
            return  # nothing more is recorded; memory stays flat
        if rows is not None:
            rows.append(row)
            self._pristine = False
        if step is not None:
            self._steps_buffered.add(step)

    # -- commits ---------------------------------------------------------------------
    def commit_due(self) -> bool:
        """Whether the batch is full: ``commit_every`` steps buffered or ``commit_seconds`` passed."""
        return len(self._steps_buffered) >= self.commit_every or (
            time.monotonic() - self._last_commit >= self.commit_seconds
        )

    def commit(self) -> None:
        """Write every buffered row in one transaction (a write failure is warned about, not raised)."""
        with self._locked():
            if not self.closed:
                self._commit()

    def commit_if_idle(self) -> None:
        """Commit if nothing was added for ``commit_seconds`` (the pause thread calls it)."""
        with self._locked():
            idle = time.monotonic() - self._last_activity >= self.commit_seconds
            if idle and not self.closed and self._file.writable:
                self._collect()
                if self._stats or self._scalars or self._events:
                    self._commit()

    def commit_now(self) -> None:
        """Commit now (a signal handler); skipped if the handler interrupted this writer itself."""
        if self.closed or self._owner == threading.get_ident() or not self._lock.acquire(timeout=5):
            return
        try:
            with self._locked():
                if not self.closed:
                    self._collect()
                    self._commit()
        finally:
            self._lock.release()

    def forget_after_fork(self) -> None:
        """In a forked child: closed, with a fresh lock; the parent's file stays the parent's."""
        self._lock, self._owner, self.closed = threading.RLock(), None, True

    def close(self) -> None:
        """Commit what is buffered, checkpoint the WAL, close the file and drop its lock."""
        self._shut(commit=True)

    def discard(self) -> None:
        """Close without committing and delete the file (a run that must not exist: a failed setup)."""
        self._shut(commit=False)

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()

    def _shut(self, commit: bool) -> None:
        with self._locked():
            if self.closed:
                return
            self._stop.set()
            _autocommit.unregister(self)
            if commit:
                self._collect()
                self._commit()
            self.closed = True
            self._file.close() if commit else self._file.remove()

    def _collect(self) -> None:
        if self._collector is not None and self._file.writable:
            try:
                self._collector()
            except Exception as err:  # the collector's failure is the recording's, never training's
                self._file.fail(err)

    def _commit(self) -> None:
        buffers = (self._stats, self._scalars, self._events)
        if not self._file.insert([(sql, rows) for sql, rows in zip(INSERTS, buffers) if rows]):
            return  # the file is busy: keep the rows for the next commit
        self._stats, self._scalars, self._events = [], [], []
        self._steps_buffered.clear()
        self._last_commit = time.monotonic()

    def _write_now(self, sql: str, rows: list[tuple]) -> None:
        with self._locked():
            if not self.closed:
                self._file.write_now(sql, rows)
                self._pristine = False

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with self._lock:
            outer, self._owner = self._owner, threading.get_ident()
            try:
                yield
            finally:
                self._owner = outer

    def __repr__(self) -> str:
        state = "closed" if self.closed else ("degraded" if self.degraded else "open")
        return f"RunWriter({str(self.path)!r}, {state})"


def _meta_rows(values: dict[str, Any]) -> list[tuple[str, str]]:
    return [
        (check_name(key, "meta key"), to_json(value, f"meta {key!r}"))
        for key, value in values.items()
    ]
