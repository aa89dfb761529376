"""The writer of a run file: buffered rows committed in batches, in WAL mode."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ._blob import encode_values
from ._schema import FORMAT_NAME, SCHEMA_SQL, SCHEMA_VERSION


class RunWriter:
    """Appends records to a run file, committing in batches.

    Args:
        path: the ``.gdr`` file; parent folders are created. An existing file is an error
            unless ``overwrite=True`` (nothing already recorded is silently lost).
        commit_every: commit after this many buffered steps.
        commit_seconds: commit when this many seconds passed since the last commit.
        overwrite: replace an existing file.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        commit_every: int = 25,
        commit_seconds: float = 2.0,
        overwrite: bool = False,
    ) -> None:
        if commit_every < 1:
            raise ValueError(f"commit_every must be >= 1, got {commit_every}")
        if commit_seconds < 0:
            raise ValueError(f"commit_seconds must be >= 0, got {commit_seconds}")
        self.path = Path(path)
        if self.path.exists():
            if not overwrite:
                raise FileExistsError(
                    f"run file {self.path} already exists: choose another path or pass overwrite=True"
                )
            for suffix in ("", "-wal", "-shm"):
                Path(str(self.path) + suffix).unlink(missing_ok=True)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.commit_every = commit_every
        self.commit_seconds = commit_seconds
        self._conn = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.executescript(SCHEMA_SQL)
        self._stats: list[tuple[int, str, bytes]] = []
        self._scalars: list[tuple[int, str, float | None]] = []
        self._events: list[tuple[int, str, str]] = []
        self._steps_buffered: set[int] = set()
        self._last_commit = time.monotonic()
        self._groups: dict[str, tuple[str, ...]] = {}
        self._stat_groups: dict[str, str] = {}
        self.closed = False
        self.set_meta({"format": FORMAT_NAME, "schema_version": SCHEMA_VERSION})

    # -- structure -------------------------------------------------------------------
    def set_meta(self, values: dict[str, Any]) -> None:
        """Write metadata keys now (JSON-encoded), in their own transaction."""
        rows = [(key, json.dumps(value, default=str)) for key, value in values.items()]
        with self._transaction():
            self._conn.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", rows)

    def define_group(self, group: str, names: Sequence[str], *, extend: bool = False) -> None:
        """Declare the column names of a statistic group (e.g. parameters, modules).

        Args:
            group: the group's name.
            names: its columns, in order.
            extend: allow a longer list whose start is the known one (time steps).
        """
        names = tuple(names)
        known = self._groups.get(group)
        if (
            known is not None
            and names[: len(known)] == known
            and (extend or len(names) == len(known))
        ):
            if len(names) <= len(known):
                return
        elif known is not None:
            raise ValueError(f"group {group!r} is already defined with other names")
        start = 0 if known is None else len(known)
        self._groups[group] = names
        with self._transaction():
            self._conn.executemany(
                "INSERT OR REPLACE INTO layer_names VALUES (?, ?, ?)",
                [(group, i, name) for i, name in enumerate(names) if i >= start],
            )

    def define_stats(self, group: str, stats: Iterable[str]) -> None:
        """Declare that each statistic in ``stats`` is a vector over ``group``."""
        if group not in self._groups:
            raise ValueError(f"define the group {group!r} before its statistics")
        new = [(s, group) for s in stats if self._stat_groups.get(s) != group]
        for stat, grp in new:
            self._stat_groups[stat] = grp
        if new:
            with self._transaction():
                self._conn.executemany("INSERT OR REPLACE INTO stat_groups VALUES (?, ?)", new)

    # -- records ---------------------------------------------------------------------
    def add_stat(self, step: int, stat: str, values: np.ndarray) -> None:
        """Buffer one statistic vector for ``step`` (float32, or float64 where a value needs it)."""
        if stat not in self._stat_groups:
            raise KeyError(f"statistic {stat!r} was not declared with define_stats")
        self._stats.append((int(step), stat, encode_values(values)))
        self._steps_buffered.add(int(step))

    def add_scalar(self, step: int, name: str, value: float | None) -> None:
        """Buffer one scalar for ``step`` (None or NaN are stored as NULL/NaN)."""
        self._scalars.append((int(step), name, None if value is None else float(value)))
        self._steps_buffered.add(int(step))

    def add_event(self, step: int, kind: str, payload: dict[str, Any]) -> None:
        """Buffer an event (e.g. a non-finite localisation) for ``step``."""
        self._events.append((int(step), kind, json.dumps(payload, default=str)))

    def mark_step(self, step: int) -> None:
        """Count ``step`` in the current batch (for callers that buffer rows themselves)."""
        self._steps_buffered.add(int(step))

    def commit_due(self) -> bool:
        """Whether the batch is full: ``commit_every`` steps buffered or ``commit_seconds`` passed."""
        return len(self._steps_buffered) >= self.commit_every or (
            time.monotonic() - self._last_commit >= self.commit_seconds
        )

    def commit(self) -> None:
        """Write every buffered row in one transaction."""
        if self.closed:
            return
        if self._stats or self._scalars or self._events:
            with self._transaction():
                self._conn.executemany("INSERT OR REPLACE INTO stats VALUES (?, ?, ?)", self._stats)
                self._conn.executemany(
                    "INSERT OR REPLACE INTO scalars VALUES (?, ?, ?)", self._scalars
                )
                self._conn.executemany("INSERT INTO events VALUES (?, ?, ?)", self._events)
        self._stats, self._scalars, self._events = [], [], []
        self._steps_buffered.clear()
        self._last_commit = time.monotonic()

    def close(self) -> None:
        """Commit what is buffered, checkpoint the WAL and close the file."""
        if self.closed:
            return
        try:
            self.commit()
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            self._conn.close()
            self.closed = True

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        self._conn.execute("BEGIN")
        try:
            yield
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")
