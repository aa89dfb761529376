"""Opening a run file for reading: read-only, leaving nothing behind, in bounded time.

* A finished run (no writer holds its lock, no ``-wal`` with data) opens ``immutable``:
  no lock, no ``-shm``/``-wal`` created, works in read-only folders and mounts.
* A live run, or a killed one whose ``-wal`` holds its last commits, opens ``mode=ro``;
  the ``-shm``/``-wal`` that this reader created are removed when it closes, if no writer
  has come since. In a read-only folder such a run is read from a private copy.
* The path is percent-encoded in the URI (``?``, ``#``, ``%`` in names), so reading never
  creates a file. Every query runs under a time limit and with bounded value sizes.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import tempfile
import time
from pathlib import Path

from ._lock import is_live

QUERY_SECONDS = 30.0  # a query on a legitimate run takes milliseconds; a hostile one is stopped
MAX_VALUE_BYTES = 256 * 2**20  # the largest text or blob read (a run's meta is kilobytes)


class ReadConnection:
    """A read-only SQLite connection to a run file, interrupted when a query runs too long.

    Args:
        path: the run file (checked to exist and to start like an SQLite file).

    Raises:
        sqlite3.Error, OSError: SQLite cannot open it.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.deadline = float("inf")
        self.interrupted = False  # Ctrl-C arrived while SQLite ran
        self._copy: tempfile.TemporaryDirectory | None = None
        self._created: list[Path] = []
        wal = _sidecar(path, "-wal")
        if not is_live(path) and not (wal.exists() and wal.stat().st_size > 0):
            self.conn = _connect(path, immutable=True)
        else:
            existed = {s: _sidecar(path, s).exists() for s in ("-wal", "-shm")}
            try:
                self.conn = _connect(path, immutable=False)
                self.conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
            except sqlite3.OperationalError:
                if hasattr(self, "conn"):
                    self.conn.close()
                if os.access(path.parent, os.W_OK):
                    raise
                self.conn = self._connect_copy(path)  # a read-only folder without the -shm it needs
            else:
                self._created = [_sidecar(path, s) for s, there in existed.items() if not there]
        self.conn.set_progress_handler(self._progress, 1000)

    def _connect_copy(self, path: Path) -> sqlite3.Connection:
        self._copy = tempfile.TemporaryDirectory(prefix="graddoctor-read-")
        copy = Path(self._copy.name) / "run.gdr"
        shutil.copyfile(path, copy)
        if _sidecar(path, "-wal").exists():
            shutil.copyfile(_sidecar(path, "-wal"), _sidecar(copy, "-wal"))
        return _connect(copy, immutable=False)

    def _progress(self) -> int:
        try:
            return int(time.monotonic() > self.deadline)
        except KeyboardInterrupt:  # raised by Python's signal handler in this callback
            self.interrupted = True
            return 1

    def execute(self, sql: str, args: tuple = ()) -> list[tuple]:
        """All rows of one query, stopped after ``QUERY_SECONDS`` (TimeoutError) or on Ctrl-C."""
        self.deadline = time.monotonic() + QUERY_SECONDS
        try:
            return self.conn.execute(sql, args).fetchall()
        except sqlite3.OperationalError as err:
            if self.interrupted:
                self.interrupted = False
                raise KeyboardInterrupt from None
            if "interrupted" in str(err):
                raise TimeoutError(f"a query took longer than {QUERY_SECONDS:g} s") from None
            raise
        finally:
            self.deadline = float("inf")

    def close(self) -> None:
        """Close, then remove the ``-shm``/``-wal`` this reader created (unless a writer came)."""
        with contextlib.suppress(sqlite3.Error):
            self.conn.close()
        if self._copy is not None:
            self._copy.cleanup()
        if self._created and not is_live(self.path):
            for sidecar in self._created:
                with contextlib.suppress(OSError):
                    if sidecar.name.endswith("-shm") or sidecar.stat().st_size == 0:
                        sidecar.unlink()


def _sidecar(path: Path, suffix: str) -> Path:
    return Path(str(path) + suffix)


def _connect(path: Path, immutable: bool) -> sqlite3.Connection:
    uri = path.resolve().as_uri() + ("?immutable=1" if immutable else "?mode=ro")
    conn = sqlite3.connect(uri, uri=True, check_same_thread=False, isolation_level=None)
    try:
        if hasattr(conn, "setlimit"):  # Python >= 3.11
            conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, MAX_VALUE_BYTES)
        conn.execute("PRAGMA trusted_schema=OFF")  # no functions from the file's schema
        conn.execute("PRAGMA query_only=ON")
        conn.execute("PRAGMA cell_size_check=ON")  # notice corrupt pages early
    except BaseException:
        conn.close()
        raise
    return conn
