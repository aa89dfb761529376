"""The run file's schema: its tables, format name, version, and the error for bad files."""

SCHEMA_VERSION = 1
FORMAT_NAME = "graddoctor-run"
SQLITE_MAGIC = b"SQLite format 3\x00"

SCHEMA_SQL = """
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

# Every table the reader queries, with the declared type of each column it reads.
TABLES: dict[str, dict[str, str]] = {
    "meta": {"key": "TEXT", "value": "TEXT"},
    "layer_names": {"grp": "TEXT", "idx": "INTEGER", "name": "TEXT"},
    "stat_groups": {"stat": "TEXT", "grp": "TEXT"},
    "stats": {"step": "INTEGER", "stat": "TEXT", "value": "BLOB"},
    "scalars": {"step": "INTEGER", "name": "TEXT", "value": "REAL"},
    "events": {"step": "INTEGER", "kind": "TEXT", "payload": "TEXT"},
}

MAX_STEP = 2**63 - 1  # SQLite's INTEGER is a signed 64-bit integer; steps count from 0


class RunFileError(ValueError):
    """A path that is not a readable graddoctor run file."""
