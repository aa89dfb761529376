"""The writer's SQL: the connection, transactions, and batched inserts that skip a row SQLite refuses."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from ._schema import SCHEMA_SQL

BUSY_SECONDS = 1.0  # how long a commit waits for a lock (a reader's recovery) before trying later
INSERT_META = "INSERT OR REPLACE INTO meta VALUES (?, ?)"
INSERTS = (  # stats, scalars, events: the writer's three buffers, in this order
    "INSERT OR REPLACE INTO stats VALUES (?, ?, ?)",
    "INSERT OR REPLACE INTO scalars VALUES (?, ?, ?)",
    "INSERT INTO events VALUES (?, ?, ?)",
)
# a row SQLite refused to bind: skipped alone, never retried (rows are checked when added)
ROW_ERRORS = (
    OverflowError,
    UnicodeError,
    ValueError,
    TypeError,
    sqlite3.InterfaceError,
    sqlite3.ProgrammingError,
    sqlite3.IntegrityError,
    sqlite3.DataError,
)
# the file itself failed: disk full, file-size limit, read-only, I/O error
FILE_ERRORS = (sqlite3.Error, OSError, MemoryError)


def open_for_writing(path: Path, header: list[tuple[str, str]]) -> sqlite3.Connection:
    """A new run database at ``path`` (already created empty), in WAL mode, with its header."""
    conn = sqlite3.connect(
        str(path), timeout=BUSY_SECONDS, check_same_thread=False, isolation_level=None
    )
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.executescript(SCHEMA_SQL)
        with transaction(conn):
            conn.executemany(INSERT_META, header)
    except BaseException:
        conn.close()
        raise
    return conn


@contextlib.contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """``BEGIN`` ... ``COMMIT``, rolled back if the body raises."""
    conn.execute("BEGIN")
    try:
        yield
    except BaseException:
        with contextlib.suppress(sqlite3.Error):  # SQLite may have rolled back already
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def insert(
    conn: sqlite3.Connection, batch: list[tuple[str, list[tuple]]]
) -> tuple[int, Exception | None]:
    """Insert every ``(sql, rows)`` of ``batch`` in one transaction.

    If SQLite refuses to bind a row, the batch is inserted again row by row without it.

    Returns:
        how many rows were skipped, and the first refusal.

    Raises:
        the file's error (one of ``FILE_ERRORS``); nothing of the batch is then written.
    """
    try:
        with transaction(conn):
            for sql, rows in batch:
                conn.executemany(sql, rows)
        return 0, None
    except ROW_ERRORS:
        pass
    skipped, first = 0, None
    with transaction(conn):
        for sql, rows in batch:
            for row in rows:
                try:
                    conn.execute(sql, row)
                except ROW_ERRORS as err:
                    skipped, first = skipped + 1, first or err
    return skipped, first


def is_busy(err: sqlite3.Error) -> bool:
    """Whether ``err`` is SQLite's "database is locked" (worth trying again later)."""
    if not isinstance(err, sqlite3.OperationalError):
        return False
    code = getattr(err, "sqlite_errorcode", None)  # Python >= 3.11
    return code in (5, 6) if code is not None else "locked" in str(err) or "busy" in str(err)
