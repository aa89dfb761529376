"""The run file (``.gdr``): one SQLite database per run, written by the Monitor.

Schema (version 1)::

    meta(key TEXT PRIMARY KEY, value TEXT)            -- JSON values
    layer_names(grp TEXT, idx INTEGER, name TEXT)     -- the columns of each group
    stat_groups(stat TEXT PRIMARY KEY, grp TEXT)      -- which group a statistic spans
    stats(step INTEGER, stat TEXT, value BLOB)        -- float32 vector over the group
    scalars(step INTEGER, name TEXT, value REAL)      -- loss, lr/0, time/step ...
    events(step INTEGER, kind TEXT, payload TEXT)     -- JSON payloads

The database runs in WAL mode: a reader can open it while the writer writes, and a
writer killed with SIGKILL loses only the rows of its uncommitted batch.
"""

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

SCHEMA_VERSION = 1
FORMAT_NAME = "graddoctor-run"
SQLITE_MAGIC = b"SQLite format 3\x00"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS layer_names(grp TEXT NOT NULL, idx INTEGER NOT NULL, name TEXT NOT NULL,
    PRIMARY KEY (grp, idx)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS stat_groups(stat TEXT PRIMARY KEY, grp TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS stats(step INTEGER NOT NULL, stat TEXT NOT NULL, value BLOB NOT NULL,
    PRIMARY KEY (stat, step)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS scalars(step INTEGER NOT NULL, name TEXT NOT NULL, value REAL,
    PRIMARY KEY (name, step)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS events(step INTEGER NOT NULL, kind TEXT NOT NULL, payload TEXT NOT NULL);
"""


class RunFileError(ValueError):
    """A path that is not a readable graddoctor run file."""


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
        self._conn.executescript(_SCHEMA)
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
        if known is not None and names[: len(known)] == known and (extend or len(names) == len(known)):
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
        """Buffer one statistic vector for ``step``."""
        if stat not in self._stat_groups:
            raise KeyError(f"statistic {stat!r} was not declared with define_stats")
        blob = np.ascontiguousarray(values, dtype=np.float32).tobytes()
        self._stats.append((int(step), stat, blob))
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

    def maybe_commit(self) -> bool:
        """Commit if the batch is full (see ``commit_due``)."""
        due = self.commit_due()
        if due:
            self.commit()
        return due

    def commit(self) -> None:
        """Write every buffered row in one transaction."""
        if self.closed:
            return
        if self._stats or self._scalars or self._events:
            with self._transaction():
                self._conn.executemany("INSERT OR REPLACE INTO stats VALUES (?, ?, ?)", self._stats)
                self._conn.executemany("INSERT OR REPLACE INTO scalars VALUES (?, ?, ?)", self._scalars)
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


class Run:
    """A recorded run, read-only; safe to open while the writer is still running.

    Every query reads the newest committed data. Arrays are numpy; a value of NaN in a
    statistic means "not measured at that step" (e.g. a parameter without gradient).
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        _check_header(self.path)
        uri = f"file:{self.path.resolve()}?mode=ro"
        try:
            self._conn = sqlite3.connect(uri, uri=True, check_same_thread=False)
            self.meta = self._read_meta()
        except sqlite3.DatabaseError as err:
            raise RunFileError(
                f"{self.path} is corrupt or truncated ({err}); if a writer was killed, "
                "keep the -wal file next to it and open again"
            ) from err
        self._validate_meta()

    # -- metadata --------------------------------------------------------------------
    def _read_meta(self) -> dict[str, Any]:
        tables = {r[0] for r in self._conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if "meta" not in tables:
            raise RunFileError(f"{self.path} is an SQLite file but not a graddoctor run (no meta table)")
        return {key: json.loads(value) for key, value in self._conn.execute("SELECT key, value FROM meta")}

    def _validate_meta(self) -> None:
        if self.meta.get("format") != FORMAT_NAME:
            raise RunFileError(f"{self.path} is an SQLite file but not a graddoctor run")
        version = self.meta.get("schema_version")
        if not isinstance(version, int) or version > SCHEMA_VERSION:
            raise RunFileError(
                f"{self.path} was written with run-file schema {version}, newer than this "
                f"graddoctor reads ({SCHEMA_VERSION}): upgrade graddoctor to read it"
            )

    def _query(self, sql: str, args: tuple = ()) -> list[tuple]:
        try:
            return self._conn.execute(sql, args).fetchall()
        except sqlite3.DatabaseError as err:
            raise RunFileError(f"{self.path} is corrupt or truncated: {err}") from err

    @property
    def model_summary(self) -> list[dict[str, Any]]:
        """Each module: name, type, depth, parameter shapes and counts, in model order."""
        return list(self.meta.get("model", {}).get("modules", []))

    def names(self, group: str) -> list[str]:
        """The column names of a statistic group (``"parameters"``, ``"modules"``...)."""
        rows = self._query("SELECT name FROM layer_names WHERE grp=? ORDER BY idx", (group,))
        return [r[0] for r in rows]

    def group_of(self, stat: str) -> str:
        """The group a statistic is a vector over; KeyError naming the known ones."""
        rows = self._query("SELECT grp FROM stat_groups WHERE stat=?", (stat,))
        if not rows:
            raise KeyError(f"no statistic {stat!r} in {self.path.name}; recorded: {', '.join(self.stat_names())}")
        return rows[0][0]

    def stat_names(self) -> list[str]:
        """Every statistic declared in the run."""
        return [r[0] for r in self._query("SELECT stat FROM stat_groups ORDER BY stat")]

    def scalar_names(self) -> list[str]:
        """Every scalar name recorded (loss, lr/0, time/step...)."""
        return [r[0] for r in self._query("SELECT DISTINCT name FROM scalars ORDER BY name")]

    # -- data ------------------------------------------------------------------------
    def series(self, stat: str, names: Sequence[str] | None = None) -> tuple[np.ndarray, list[str], np.ndarray]:
        """All recorded steps of one statistic.

        Args:
            stat: a statistic name, e.g. ``"grad_norm"``.
            names: optional subset of columns (layer names), in the order wanted.

        Returns:
            ``(steps, names, values)``: int64 ``[S]``, the column names, and float64
            ``[S, len(names)]`` (NaN where not measured).
        """
        group = self.group_of(stat)
        all_names = self.names(group)
        rows = self._query("SELECT step, value FROM stats WHERE stat=? ORDER BY step", (stat,))
        steps = np.array([r[0] for r in rows], dtype=np.int64)
        values = np.full((len(rows), len(all_names)), np.nan, dtype=np.float64)
        for i, (_, blob) in enumerate(rows):
            vec = np.frombuffer(blob, dtype=np.float32)
            values[i, : min(len(vec), len(all_names))] = vec[: len(all_names)]
        if names is not None:
            index = {n: i for i, n in enumerate(all_names)}
            missing = [n for n in names if n not in index]
            if missing:
                raise KeyError(f"unknown names for {stat!r}: {missing}; known: {all_names}")
            values = values[:, [index[n] for n in names]]
            all_names = list(names)
        return steps, all_names, values

    def at(self, stat: str, step: int | None = None) -> tuple[int, list[str], np.ndarray]:
        """One step of a statistic (default: the last recorded); ``(step, names, vector)``."""
        group = self.group_of(stat)
        if step is None:
            rows = self._query("SELECT step, value FROM stats WHERE stat=? ORDER BY step DESC LIMIT 1", (stat,))
        else:
            rows = self._query("SELECT step, value FROM stats WHERE stat=? AND step=?", (stat, int(step)))
        names = self.names(group)
        if not rows:
            where = "any step" if step is None else f"step {step}"
            raise KeyError(f"no {stat!r} recorded at {where} in {self.path.name}")
        vec = np.full(len(names), np.nan)
        raw = np.frombuffer(rows[0][1], dtype=np.float32)
        vec[: min(len(raw), len(names))] = raw[: len(names)]
        return int(rows[0][0]), names, vec

    def scalars(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """A scalar over steps: ``(steps int64, values float64)``; NULL reads as NaN."""
        rows = self._query("SELECT step, value FROM scalars WHERE name=? ORDER BY step", (name,))
        steps = np.array([r[0] for r in rows], dtype=np.int64)
        values = np.array([np.nan if r[1] is None else r[1] for r in rows], dtype=np.float64)
        return steps, values

    def steps(self, stat: str | None = None) -> np.ndarray:
        """Every recorded step (of one statistic, or of anything)."""
        if stat is None:
            rows = self._query("SELECT step FROM stats UNION SELECT step FROM scalars ORDER BY step")
        else:
            rows = self._query("SELECT step FROM stats WHERE stat=? ORDER BY step", (stat,))
        return np.array([r[0] for r in rows], dtype=np.int64)

    def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        """Recorded events, each ``{"step", "kind", **payload}``."""
        if kind is None:
            rows = self._query("SELECT step, kind, payload FROM events ORDER BY rowid")
        else:
            rows = self._query("SELECT step, kind, payload FROM events WHERE kind=? ORDER BY rowid", (kind,))
        return [{"step": s, "kind": k, **json.loads(p)} for s, k, p in rows]

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Run:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r})"


def _check_header(path: Path) -> None:
    if not path.exists():
        raise FileNotFoundError(f"no run file at {path}")
    if path.is_dir():
        raise RunFileError(f"{path} is a folder, not a graddoctor run file")
    with open(path, "rb") as handle:
        head = handle.read(len(SQLITE_MAGIC))
    if len(head) < len(SQLITE_MAGIC):
        raise RunFileError(f"{path} is empty or truncated: not a graddoctor run file")
    if head != SQLITE_MAGIC:
        raise RunFileError(f"{path} is not a graddoctor run file (not an SQLite database)")


def open_run(path: str | os.PathLike | Run) -> Run:
    """Open a recorded run for reading (a ``Run`` is returned as is).

    Raises:
        FileNotFoundError: no such file.
        RunFileError: not a run, corrupt or truncated, or written by a newer schema.
    """
    if isinstance(path, Run):
        return path
    return Run(path)
