"""Property: any truncation, bit flip or crafted schema of a run file opens or raises RunFileError,
in bounded time; the command line answers such a file with exit 0, 1 or 2, never a traceback."""

from __future__ import annotations

import sqlite3
import tempfile
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from graddoctor import RunFileError, diagnose, open_run
from graddoctor.cli import app
from graddoctor.views import layer_rows

from .helpers import monitored_run

SECONDS = 10  # per file, every read included (a healthy read takes milliseconds)
# derandomized: the same examples on every run (CI stays fast and a failure reproduces);
# the counts keep the reliability suite near a minute on 2 cores, explicit examples
# target the SQLite header and every page boundary of the base file (8 pages of 4 KiB)
PROPERTY = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
BASE_SIZE, PAGE = 32768, 4096
# header fields: page size, write/read versions, page count, schema cookie, text encoding,
# the first page's b-tree header, and the first byte of the second page
HEADER_OFFSETS = (16, 18, 19, 28, 40, 56, 100, PAGE)


@pytest.fixture(scope="module")
def run_bytes(tmp_path_factory) -> bytes:
    path = tmp_path_factory.mktemp("base") / "base.gdr"
    monitored_run(path, steps=6)
    return path.read_bytes()


def read_everything(path: Path) -> None:
    """Open and read every part of ``path`` through the Run API; RunFileError is the only failure."""
    try:
        run = open_run(path)
    except RunFileError:
        return
    try:
        with run:
            assert isinstance(run.model_summary, list)
            run.steps()
            run.events()
            for stat in run.stat_names():
                run.names(run.group_of(stat))
                run.series(stat)
                try:
                    run.at(stat)
                except KeyError as err:  # no row of a declared statistic: the API's answer
                    assert "recorded at any step" in str(err)
            for name in run.scalar_names():
                run.scalars(name)
            # a statistic missing from its family is not recorded, never a KeyError
            diagnose(run)
            layer_rows(run)
    except RunFileError:
        pass


def check_file(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "run.gdr"
        path.write_bytes(data)
        start = time.monotonic()
        read_everything(path)
        for command in (["diagnose", str(path)], ["show", str(path)]):
            result = CliRunner().invoke(app, command)
            assert result.exit_code in (0, 1, 2, 3), (command, result.output, result.exception)
            assert "Traceback" not in result.output
        assert time.monotonic() - start < SECONDS


def _examples(values, key):
    """``hypothesis.example`` for each value, keyword ``key``."""

    def add(test):
        for value in values:
            test = example(**{key: value})(test)
        return test

    return add


@settings(PROPERTY, max_examples=25)
@_examples([k * PAGE / BASE_SIZE for k in range(8)] + [50 / BASE_SIZE], "fraction")
@given(fraction=st.floats(0, 1, exclude_max=True))
def test_truncated_files(run_bytes, fraction):
    check_file(run_bytes[: int(len(run_bytes) * fraction)])


@settings(PROPERTY, max_examples=40)
@_examples([[(offset / BASE_SIZE, 0)] for offset in HEADER_OFFSETS], "flips")
@given(
    flips=st.lists(
        st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 7)), min_size=1, max_size=8
    )
)
def test_bit_flipped_files(run_bytes, flips):
    data = bytearray(run_bytes)
    for where, bit in flips:
        data[int(where * len(data))] ^= 1 << bit
    check_file(bytes(data))


VALUES = st.one_of(
    st.none(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=True),
    st.text(max_size=20),
    st.binary(max_size=40),
)
GROUPS = st.sampled_from(["parameters", "modules", "time:rnn", "", "x\x1b[31m[/oops]"])
STATS = st.sampled_from(
    ["grad_norm", "grad_max", "weight_norm", "act_mean", "time_grad_norm:rnn", "loss"]
)
JSON = st.sampled_from(
    [
        '"graddoctor-run"',
        "1",
        "2",
        "[",
        "{}",
        '{"modules": []}',
        '{"modules": [{"name": "a"}]}',
        "null",
        '{"modules": [{"name": "a", "type": "Linear", "index": 0}]}',
        '["a", "b"]',
        "[" * 5000,
        '{"a": 1}',
    ]
)
META_KEYS = st.sampled_from(
    ["model", "execution_order", "config", "recurrent_spectra", "frozen_parameters", "x"]
)
SMALL = st.integers(0, 8)
BLOBS = st.integers(0, 5).map(lambda n: b"\x00\x00\x80\x3f" * n)


def _mix(plausible):
    return st.one_of(plausible, plausible, plausible, VALUES)


ROWS = {  # plausible values, mixed with anything SQLite stores
    "meta": st.tuples(_mix(META_KEYS), _mix(JSON)),
    "layer_names": st.tuples(
        _mix(GROUPS), _mix(SMALL), _mix(st.sampled_from(["a", "b.weight", "enc[/oops]"]))
    ),
    "stat_groups": st.tuples(_mix(STATS), _mix(GROUPS)),
    "stats": st.tuples(_mix(SMALL), _mix(STATS), _mix(BLOBS)),
    "scalars": st.tuples(_mix(SMALL), _mix(st.sampled_from(["loss", "lr/0"])), _mix(st.floats())),
    "events": st.tuples(
        _mix(SMALL), _mix(st.sampled_from(["nonfinite_source", "exception"])), _mix(JSON)
    ),
}
COLUMNS = {
    "meta": "key TEXT, value TEXT",
    "layer_names": "grp TEXT, idx INTEGER, name TEXT",
    "stat_groups": "stat TEXT, grp TEXT",
    "stats": "step INTEGER, stat TEXT, value BLOB",
    "scalars": "step INTEGER, name TEXT, value REAL",
    "events": "step INTEGER, kind TEXT, payload TEXT",
}
SHAPES = ["table"] * 12 + ["view", "recursive view", "mistyped", "missing", "virtual"]


def _definition(table: str, shape: str) -> str | None:
    columns = [c.split()[0] for c in COLUMNS[table].split(", ")]
    if shape == "missing":
        return None
    if shape == "view":
        return (
            f"CREATE VIEW {table}({', '.join(columns)}) AS SELECT {', '.join(['1'] * len(columns))}"
        )
    if shape == "recursive view":
        return (
            f"CREATE VIEW {table}({', '.join(columns)}) AS WITH RECURSIVE r(n) AS "
            f"(SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT {', '.join(['n'] * len(columns))} FROM r"
        )
    if shape == "virtual":
        return f"CREATE VIRTUAL TABLE {table} USING fts5({', '.join(columns)})"
    if shape == "mistyped":
        return f"CREATE TABLE {table}({', '.join(c + ' ANY' for c in columns)})"
    return f"CREATE TABLE {table}({COLUMNS[table]})"


@st.composite
def crafted(draw, hostile_schema: bool) -> bytes:
    """A run database whose tables may be views, missing or mistyped, and whose rows are wild."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "crafted.gdr"
        conn = sqlite3.connect(path)
        conn.execute(_definition("meta", "table"))
        conn.execute(
            "INSERT INTO meta VALUES ('format', '\"graddoctor-run\"'), ('schema_version', '1')"
        )
        for table in COLUMNS:
            shape = draw(st.sampled_from(SHAPES)) if hostile_schema and table != "meta" else "table"
            definition = _definition(table, shape)
            if table != "meta" and definition is not None:
                try:
                    conn.execute(definition)
                except sqlite3.OperationalError:  # no fts5 in this SQLite
                    continue
            if shape in ("table", "mistyped"):
                for row in draw(st.lists(ROWS[table], max_size=8)):
                    conn.execute(f"INSERT INTO {table} VALUES ({', '.join('?' * len(row))})", row)
        conn.commit()
        conn.close()
        return path.read_bytes()


@settings(PROPERTY, max_examples=80)
@given(data=crafted(hostile_schema=True))
def test_crafted_schemas(data):
    check_file(data)


@settings(PROPERTY, max_examples=60)
@given(data=crafted(hostile_schema=False))
def test_crafted_rows(data):
    check_file(data)
