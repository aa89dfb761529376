"""The reader of a run file: header and schema validated, numpy arrays out."""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ._blob import decode_values
from ._schema import FORMAT_NAME, SCHEMA_VERSION, SQLITE_MAGIC, RunFileError


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
        tables = {
            r[0] for r in self._conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
        }
        if "meta" not in tables:
            raise RunFileError(
                f"{self.path} is an SQLite file but not a graddoctor run (no meta table)"
            )
        return {
            key: json.loads(value)
            for key, value in self._conn.execute("SELECT key, value FROM meta")
        }

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
            raise KeyError(
                f"no statistic {stat!r} in {self.path.name}; recorded: {', '.join(self.stat_names())}"
            )
        return rows[0][0]

    def stat_names(self) -> list[str]:
        """Every statistic declared in the run."""
        return [r[0] for r in self._query("SELECT stat FROM stat_groups ORDER BY stat")]

    def scalar_names(self) -> list[str]:
        """Every scalar name recorded (loss, lr/0, time/step...)."""
        return [r[0] for r in self._query("SELECT DISTINCT name FROM scalars ORDER BY name")]

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
        all_names = self.names(group)
        rows = self._query("SELECT step, value FROM stats WHERE stat=? ORDER BY step", (stat,))
        steps = np.array([r[0] for r in rows], dtype=np.int64)
        values = np.full((len(rows), len(all_names)), np.nan, dtype=np.float64)
        for i, (_, blob) in enumerate(rows):
            vec = decode_values(blob)
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
            rows = self._query(
                "SELECT step, value FROM stats WHERE stat=? ORDER BY step DESC LIMIT 1", (stat,)
            )
        else:
            rows = self._query(
                "SELECT step, value FROM stats WHERE stat=? AND step=?", (stat, int(step))
            )
        names = self.names(group)
        if not rows:
            where = "any step" if step is None else f"step {step}"
            raise KeyError(f"no {stat!r} recorded at {where} in {self.path.name}")
        vec = np.full(len(names), np.nan)
        raw = decode_values(rows[0][1])
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
            rows = self._query(
                "SELECT step FROM stats UNION SELECT step FROM scalars ORDER BY step"
            )
        else:
            rows = self._query("SELECT step FROM stats WHERE stat=? ORDER BY step", (stat,))
        return np.array([r[0] for r in rows], dtype=np.int64)

    def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        """Recorded events, each ``{"step", "kind", **payload}``."""
        if kind is None:
            rows = self._query("SELECT step, kind, payload FROM events ORDER BY rowid")
        else:
            rows = self._query(
                "SELECT step, kind, payload FROM events WHERE kind=? ORDER BY rowid", (kind,)
            )
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
