"""The reader of a run file: a validated, consistent snapshot, numpy arrays out."""

from __future__ import annotations

import os
import sqlite3
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ._connect import QUERY_SECONDS, ReadConnection
from ._schema import MAX_STEP, SQLITE_MAGIC, RunFileError
from ._validate import (
    check_integer,
    check_tables,
    event_payload,
    read_groups,
    read_meta,
    vector,
)
from ._vectors import integers, reals, stat_matrix


class Run:
    """A recorded run, read-only; safe to open while the writer is still running.

    The run is read as one snapshot: every query sees the commits made before the run was
    opened (or last :meth:`refresh`-ed), so statistics read one after another agree. Arrays
    are numpy; a value of NaN in a statistic means "not measured at that step" (e.g. a
    parameter without gradient).

    Raises:
        FileNotFoundError: no such file.
        RunFileError: not a run, corrupt or truncated, written by a newer schema, or not
            what graddoctor writes (checked before anything is read).
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        _check_header(self.path)
        self._db = self._guard(lambda: ReadConnection(self.path))
        self._closer = weakref.finalize(self, self._db.close)
        try:
            self.refresh()
        except BaseException:
            self.close()
            raise

    def refresh(self) -> None:
        """Move the snapshot to the newest commit of a run that is still being written.

        While a ``Run`` stays open on a live run, the writer cannot reset its ``-wal``;
        close it (or refresh it) when done.
        """
        self._guard(self._load)

    def _load(self) -> None:
        if self._db.conn.in_transaction:
            self._db.execute("COMMIT")
        self._db.execute("BEGIN")
        check_tables(self._db, self.path)  # the first read fixes the snapshot
        self.meta = read_meta(self._db, self.path)
        self._sizes, self._groups = read_groups(self._db, self.path)
        self._scalar_names: list[str] | None = None
        self._names: dict[str, list[str]] = {}

    def _guard(self, read: Any) -> Any:
        try:
            return read()
        except sqlite3.DatabaseError as err:
            raise RunFileError(
                f"{self.path} is corrupt or truncated ({err}); if a writer was killed, "
                f"keep {self.path.name}-wal next to it and open again"
            ) from err
        except TimeoutError:
            raise RunFileError(
                f"{self.path}: reading took longer than {QUERY_SECONDS:g} s; the file is "
                "corrupt or was crafted to loop"
            ) from None
        except (sqlite3.Error, OSError, MemoryError) as err:
            raise RunFileError(f"{self.path} cannot be read: {err}") from err

    def _query(self, sql: str, args: tuple = ()) -> list[tuple]:
        return self._guard(lambda: self._db.execute(sql, args))

    @property
    def model_summary(self) -> list[dict[str, Any]]:
        """Each module: name, type, depth, parameter shapes and counts, in model order."""
        return list(self.meta.get("model", {}).get("modules", []))

    def names(self, group: str) -> list[str]:
        """The column names of a statistic group (``"parameters"``, ``"modules"``...)."""
        if group not in self._names:  # read once per snapshot
            rows = self._query("SELECT name FROM layer_names WHERE grp=? ORDER BY idx", (group,))
            self._names[group] = [r[0] for r in rows]
        return list(self._names[group])

    def group_of(self, stat: str) -> str:
        """The group a statistic is a vector over; KeyError naming the known ones."""
        if stat not in self._groups:
            raise KeyError(
                f"no statistic {stat!r} in {self.path.name}; recorded: {', '.join(self.stat_names())}"
            )
        return self._groups[stat]

    def stat_names(self) -> list[str]:
        """Every statistic declared in the run."""
        return sorted(self._groups)

    def scalar_names(self) -> list[str]:
        """Every scalar name recorded (loss, lr/0, time/step...)."""
        if self._scalar_names is None:  # read once per snapshot
            rows = self._query("SELECT DISTINCT name FROM scalars ORDER BY name")
            self._scalar_names = [r[0] for r in rows if isinstance(r[0], str)]
        return list(self._scalar_names)

    def count(self, stat: str) -> int:
        """How many steps recorded ``stat`` (0 for a statistic never recorded or not declared)."""
        ((found,),) = self._query("SELECT COUNT(*) FROM stats WHERE stat=?", (stat,))
        return int(found)

    # -- data ------------------------------------------------------------------------
    def series(
        self, stat: str, names: Sequence[str] | None = None
    ) -> tuple[np.ndarray, list[str], np.ndarray]:
        """All recorded steps of one statistic.

        Args:
            stat: a statistic name, e.g. ``"grad_norm"``.
            names: optional subset of columns (layer names), in the order wanted.

        Returns:
            ``(steps, names, values)``: int64 ``[S]``, the column names, and float64
            ``[S, len(names)]`` (NaN where not measured).
        """
        group = self.group_of(stat)
        all_names, size = self.names(group), self._sizes.get(group, 0)
        rows = self._query("SELECT step, value FROM stats WHERE stat=? ORDER BY step", (stat,))
        steps, values = stat_matrix(self.path, stat, rows, size)
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
            sql, args = (
                "SELECT step, value FROM stats WHERE stat=? ORDER BY step DESC LIMIT 1",
                (stat,),
            )
        elif 0 <= int(step) <= MAX_STEP:
            sql, args = "SELECT step, value FROM stats WHERE stat=? AND step=?", (stat, int(step))
        else:
            sql, args = "SELECT step, value FROM stats WHERE 0", ()
        rows = self._query(sql, args)
        names, size = self.names(group), self._sizes.get(group, 0)
        if not rows:
            where = "any step" if step is None else f"step {step}"
            raise KeyError(f"no {stat!r} recorded at {where} in {self.path.name}")
        vec = np.full(size, np.nan)
        raw = vector(self.path, stat, rows[0][0], rows[0][1], size)
        vec[: len(raw)] = raw
        return int(rows[0][0]), names, vec

    def scalars(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """A scalar over steps: ``(steps int64, values float64)``; NULL reads as NaN."""
        rows = self._query("SELECT step, value FROM scalars WHERE name=? ORDER BY step", (name,))
        steps = integers(self.path, "scalars", [r[0] for r in rows])
        return steps, reals(self.path, name, [r[1] for r in rows])

    def steps(self, stat: str | None = None) -> np.ndarray:
        """Every recorded step (of one statistic, or of anything)."""
        if stat is None:
            sql, args = "SELECT step FROM stats UNION SELECT step FROM scalars ORDER BY step", ()
        else:
            sql, args = "SELECT step FROM stats WHERE stat=? ORDER BY step", (stat,)
        return integers(self.path, "stats", [r[0] for r in self._query(sql, args)])

    def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        """Recorded events, each ``{"step", "kind", **payload}``."""
        if kind is None:
            rows = self._query("SELECT step, kind, payload FROM events ORDER BY rowid")
        else:
            rows = self._query(
                "SELECT step, kind, payload FROM events WHERE kind=? ORDER BY rowid", (kind,)
            )
        return [
            {
                "step": check_integer(self.path, "events", s),
                "kind": k,
                **event_payload(self.path, k, p),
            }
            for s, k, p in rows
        ]

    def close(self) -> None:
        """Close the file (and remove the ``-shm`` this reader created)."""
        self._closer()

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
    try:
        with open(path, "rb") as handle:
            head = handle.read(len(SQLITE_MAGIC))
    except OSError as err:
        raise RunFileError(f"{path} cannot be read: {err.strerror}") from err
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
