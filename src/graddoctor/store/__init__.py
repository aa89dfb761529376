"""The run file (``.gdr``): one SQLite database per run, written by the Monitor.

Schema (version 1)::

    meta(key TEXT PRIMARY KEY, value TEXT)            -- JSON values
    layer_names(grp TEXT, idx INTEGER, name TEXT)     -- the columns of each group
    stat_groups(stat TEXT PRIMARY KEY, grp TEXT)      -- which group a statistic spans
    stats(step INTEGER, stat TEXT, value BLOB)        -- float32 or tagged float64 vector (_blob.py)
    scalars(step INTEGER, name TEXT, value REAL)      -- loss, lr/0, time/step ...
    events(step INTEGER, kind TEXT, payload TEXT)     -- JSON payloads

The database runs in WAL mode: a reader can open it while the writer writes (it reads
one consistent snapshot), and a writer killed with SIGKILL loses only the rows of its
uncommitted batch. The writer creates its file exclusively and locks it, commits on a
pause, at exit and on SIGTERM, and never raises a write failure into training
(:mod:`._writer`); the reader validates the file before reading it (:mod:`._validate`).
"""

from ._reader import Run, open_run
from ._rows import check_step
from ._schema import FORMAT_NAME, SCHEMA_VERSION, SQLITE_MAGIC, RunFileError
from ._writer import RunWriter

__all__ = [
    "FORMAT_NAME",
    "SCHEMA_VERSION",
    "SQLITE_MAGIC",
    "Run",
    "RunFileError",
    "RunWriter",
    "check_step",
    "open_run",
]
