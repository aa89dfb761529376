"""A writer's open run file: its lock, its connection, and what happens when writing fails.

A failure of the file itself (disk full, file-size limit, read-only, I/O error) is warned
about once; the file then takes no more rows, keeps what was committed, and raises nothing.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import sys
import warnings
from pathlib import Path

from . import _lock
from ._sql import FILE_ERRORS, insert, is_busy, open_for_writing, transaction

MAX_BUSY_COMMITS = 5  # consecutive "database is locked" commits before giving up


class RunFile:
    """The database a writer appends to, created exclusively and locked until closed.

    Args:
        path: the run file.
        overwrite: replace a finished run at ``path`` (never a live one).
        header: ``(key, JSON)`` metadata rows written with the schema.

    Raises:
        FileExistsError, IsADirectoryError, OSError: see :func:`~._lock.claim`; an OSError
            naming the path if SQLite cannot create the database (nothing is left behind).
    """

    def __init__(self, path: Path, overwrite: bool, header: list[tuple[str, str]]) -> None:
        self.path = path
        self.error: BaseException | None = None
        self.pid = os.getpid()
        self._busy = self._skipped = 0
        self._conn: sqlite3.Connection | None = None
        self._lock_fd = _lock.claim(path, overwrite)
        try:
            self._conn = open_for_writing(path, header)
        except BaseException as err:
            self.remove()
            if isinstance(err, sqlite3.Error):
                raise OSError(f"cannot create run file {path}: {err}") from err
            raise

    @property
    def writable(self) -> bool:
        """Whether rows can still be written (open, not failed, in the process that opened it)."""
        return self._conn is not None and self.error is None and os.getpid() == self.pid

    def write_now(self, sql: str, rows: list[tuple]) -> None:
        """Insert ``rows`` in their own transaction (structure and metadata)."""
        if not self.writable:
            return
        try:
            with transaction(self._conn):
                self._conn.executemany(sql, rows)
        except FILE_ERRORS as err:
            self.fail(err)

    def insert(self, batch: list[tuple[str, list[tuple]]]) -> bool:
        """Commit a batch of buffered rows; False if they should be kept for a later try."""
        if not batch or not self.writable:
            return True
        try:
            skipped, first = insert(self._conn, batch)
        except FILE_ERRORS as err:
            if is_busy(err) and self._busy < MAX_BUSY_COMMITS:
                self._busy += 1
                return False
            self.fail(err)
            return True
        self._busy = 0
        if skipped and not self._skipped:
            _warn(
                f"graddoctor: skipped {skipped} row(s) SQLite could not store in {self.path} ({first})"
            )
        self._skipped += skipped
        return True

    def fail(self, err: BaseException) -> None:
        """Stop writing after ``err`` (warned about once)."""
        if self.error is None:
            self.error = err
            _warn(
                f"graddoctor: cannot write the run file {self.path} ({type(err).__name__}: {err}); "
                "training continues without recording, the steps committed so far stay in the file"
            )

    def close(self) -> None:
        """Checkpoint the WAL into the file (if it still works), close it and drop the lock."""
        if os.getpid() != self.pid or self._conn is None:
            return  # a forked child: the parent's connection and lock
        conn, self._conn = self._conn, None
        if self.error is None:
            with contextlib.suppress(*FILE_ERRORS):
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        with contextlib.suppress(*FILE_ERRORS):
            conn.close()
        with contextlib.suppress(OSError):
            _lock.release(self._lock_fd)

    def remove(self) -> None:
        """Close and delete the file and its sidecars, then drop the lock."""
        if os.getpid() != self.pid:
            return
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(*FILE_ERRORS):
                conn.close()
        for suffix in ("", *_lock.SIDECARS):
            with contextlib.suppress(OSError):
                Path(str(self.path) + suffix).unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            _lock.release(self._lock_fd)


def _warn(message: str) -> None:
    """A RuntimeWarning; printed instead if warnings are errors (it must never raise)."""
    try:
        warnings.warn(message, RuntimeWarning, stacklevel=4)
    except Exception:
        print(message, file=sys.stderr)
