"""What a run file must be before anything is read from it, and what each row must be.

Tables, not views (a view named ``stats`` could recurse forever); the columns the reader
reads, with their declared types; metadata that is JSON of the shapes the library reads;
groups numbered 0..n-1; statistic vectors no longer than their group. Anything else is a
:class:`RunFileError` naming the file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ._blob import FLOAT64_TAG, decode_values
from ._connect import ReadConnection
from ._schema import FORMAT_NAME, SCHEMA_VERSION, TABLES, RunFileError


def check_tables(db: ReadConnection, path: Path) -> None:
    """Every table the reader queries is a plain table with the expected columns."""
    names = ", ".join(f"'{t}'" for t in TABLES)
    found = {
        name: (kind, sql)
        for name, kind, sql in db.execute(
            f"SELECT name, type, sql FROM sqlite_master WHERE name IN ({names})"
        )
    }
    if "meta" not in found:
        if not db.execute("SELECT 1 FROM sqlite_master LIMIT 1"):
            raise RunFileError(
                f"{path} holds no tables: if it is a copy of a run whose writer was killed, its "
                f"data is in {path.name}-wal; copy that file next to it and open again"
            )
        raise RunFileError(f"{path} is an SQLite file but not a graddoctor run (no meta table)")
    for table, columns in TABLES.items():
        if table not in found:
            raise RunFileError(f"{path} is not a complete graddoctor run: no {table} table")
        kind, sql = found[table]
        if kind != "table" or not isinstance(sql, str) or "VIRTUAL" in sql[:30].upper():
            raise RunFileError(
                f"{path}: {table} is a {kind}, not a plain table: not a graddoctor run"
            )
        declared = {
            row[1]: str(row[2]).upper() for row in db.execute(f"PRAGMA table_info({table})")
        }
        for column, kind in columns.items():
            if declared.get(column) != kind:
                raise RunFileError(
                    f"{path}: column {table}.{column} is declared {declared.get(column)!r}, not {kind}"
                )


def read_meta(db: ReadConnection, path: Path) -> dict[str, Any]:
    """The ``meta`` table as JSON values, with the format, version and known shapes checked."""
    meta = {}
    for key, value in db.execute("SELECT key, value FROM meta"):
        if not isinstance(key, str) or not isinstance(value, str):
            raise RunFileError(
                f"{path}: the meta table holds a {type(value).__name__} that is not JSON text"
            )
        try:
            meta[key] = json.loads(value)
        except (ValueError, RecursionError) as err:
            raise RunFileError(f"{path}: meta {key!r} is not valid JSON ({err})") from None
    if meta.get("format") != FORMAT_NAME:
        raise RunFileError(f"{path} is an SQLite file but not a graddoctor run")
    version = meta.get("schema_version")
    if not isinstance(version, int) or version > SCHEMA_VERSION:
        raise RunFileError(
            f"{path} was written with run-file schema {version}, newer than this "
            f"graddoctor reads ({SCHEMA_VERSION}): upgrade graddoctor to read it"
        )
    for key, ok in _SHAPES.items():
        if key in meta and not ok(meta[key]):
            raise RunFileError(f"{path}: meta {key!r} does not have the shape graddoctor writes")
    return meta


def _list_of(kind: type, value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, kind) for v in value)


def _module(m: Any) -> bool:
    return (
        isinstance(m, dict)
        and isinstance(m.get("name"), str)
        and isinstance(m.get("type"), str)
        and type(m.get("index")) is int
        and type(m.get("depth", 0)) is int
    )


def _spectrum(s: Any) -> bool:
    numbers = (
        (s.get("largest_singular_value"), s.get("spectral_radius")) if isinstance(s, dict) else ()
    )
    return (
        isinstance(s, dict)
        and isinstance(s.get("module"), str)
        and all(
            v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)) for v in numbers
        )
    )


_SHAPES = {
    "model": lambda m: (
        isinstance(m, dict)
        and isinstance(m.get("modules", []), list)
        and all(_module(x) for x in m.get("modules", []))
    ),
    "execution_order": lambda v: v is None or _list_of(str, v),
    "frozen_parameters": lambda v: _list_of(str, v),
    "config": lambda v: isinstance(v, dict),
    "recurrent_spectra": lambda v: isinstance(v, list) and all(_spectrum(s) for s in v),
}


def read_groups(db: ReadConnection, path: Path) -> tuple[dict[str, int], dict[str, str]]:
    """Each group's size (its names numbered 0..n-1) and each statistic's group."""
    sizes = {}
    for group, count, low, high, bad in db.execute(
        "SELECT grp, COUNT(*), MIN(idx), MAX(idx), "
        "SUM(typeof(grp) != 'text' OR typeof(idx) != 'integer' OR typeof(name) != 'text') "
        "FROM layer_names GROUP BY grp"
    ):
        if bad or not isinstance(group, str) or low != 0 or high != count - 1:
            raise RunFileError(f"{path}: the names of group {group!r} are not numbered 0..n-1")
        sizes[group] = count
    groups = {}
    for stat, group in db.execute("SELECT stat, grp FROM stat_groups"):
        if not isinstance(stat, str) or not isinstance(group, str):
            raise RunFileError(f"{path}: the stat_groups table holds a name that is not text")
        groups[stat] = group
    return sizes, groups


def vector(path: Path, stat: str, step: Any, blob: Any, size: int) -> np.ndarray:
    """One stored statistic row (float32 or tagged float64), checked against its group's ``size``."""
    wide = isinstance(blob, bytes) and len(blob) % 8 == len(FLOAT64_TAG) and blob.endswith(FLOAT64_TAG)
    width = 8 if wide else 4
    stored = len(blob) - len(FLOAT64_TAG) if wide else len(blob) if isinstance(blob, bytes) else 0
    if (
        type(step) is not int
        or not isinstance(blob, bytes)
        or stored % width
        or stored > width * size
        or (not blob and size)
    ):
        shown = f"{len(blob)} bytes" if isinstance(blob, bytes) else type(blob).__name__
        raise RunFileError(
            f"{path}: the {stat!r} row at step {step!r} is malformed ({shown} for {size} columns)"
        )
    return decode_values(blob)


def check_integer(path: Path, table: str, value: Any) -> int:
    """A step read from ``table``: an integer, else RunFileError."""
    if type(value) is not int:
        raise RunFileError(f"{path}: a step in the {table} table is {value!r}, not an integer")
    return value


def check_real(path: Path, name: str, value: Any) -> float:
    """A scalar's value: a number or NULL (NaN), else RunFileError."""
    if value is None:
        return float("nan")
    if type(value) not in (int, float):
        raise RunFileError(f"{path}: scalar {name!r} holds {type(value).__name__}, not a number")
    return float(value)


def event_payload(path: Path, kind: Any, payload: Any) -> dict[str, Any]:
    """An event's kind and JSON payload (an object), else RunFileError."""
    try:
        value = json.loads(payload) if isinstance(kind, str) and isinstance(payload, str) else None
    except (ValueError, RecursionError):
        value = None
    if not isinstance(value, dict):
        raise RunFileError(f"{path}: an event {kind!r} has no JSON object as its payload")
    return value
