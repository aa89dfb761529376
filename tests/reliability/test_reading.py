"""Every run file opens or raises RunFileError naming it: live, read-only, killed, oddly named."""

from __future__ import annotations

import multiprocessing
import os
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
import tempfile
import time

import numpy as np
import pytest

from graddoctor import RunFileError, RunWriter, diagnose, open_run
from graddoctor.store import _connect

from .helpers import TRAIN, monitored_run, small_run, spawn

LIVE = (
    TRAIN
    + """
mon = Monitor(model, opt, path=sys.argv[1], commit_every=1, activations_every=1)
print("ready", flush=True)
while True:
    train(mon, 1)
"""
)


def _committed(path) -> np.ndarray:
    try:
        with open_run(path) as run:
            return run.steps("grad_norm")
    except (FileNotFoundError, RunFileError, KeyError):  # not created, or no statistic yet
        return np.zeros(0)


def test_diagnose_twenty_times_while_the_run_is_written(tmp_path):
    path = tmp_path / "live.gdr"
    proc = spawn(LIVE, path)
    try:
        assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
        deadline = time.monotonic() + 30
        while len(_committed(path)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        seen = []
        for _ in range(20):
            diagnosis = diagnose(path)
            with open_run(path) as run:
                steps, names, values = run.series("grad_norm")
                assert values.shape == (len(steps), len(names))
                seen.append(len(steps))
            assert diagnosis.summary
        assert seen[-1] > seen[0] > 0  # the run grew while it was read
    finally:
        proc.kill()
        proc.wait()


def test_reading_leaves_no_litter(tmp_path):
    path = tmp_path / "closed.gdr"
    monitored_run(path)
    before = sorted(os.listdir(tmp_path))
    for _ in range(3):
        with open_run(path) as run:
            run.series("grad_norm")
        diagnose(path)
    assert sorted(os.listdir(tmp_path)) == before == ["closed.gdr"]


def _write_and_die(path):
    writer = RunWriter(path, commit_every=1)
    writer.define_group("g", ["x"])
    writer.define_stats("g", ["s"])
    for i in range(5):
        writer.add_stat(i, "s", np.ones(1))
        writer.commit()
    os.kill(os.getpid(), signal.SIGKILL)


def _killed_run(folder):
    """A run whose writer was killed: its last commits only in the -wal."""
    path = folder / "killed.gdr"
    # a forked child starts at once (a new interpreter would import torch first)
    child = multiprocessing.get_context("fork").Process(target=_write_and_die, args=(path,))
    child.start()
    child.join(60)
    assert child.exitcode == -signal.SIGKILL
    return path


def test_a_killed_run_opens_and_a_copy_without_its_wal_says_so(tmp_path):
    path = _killed_run(tmp_path)
    assert list(open_run(path).steps("s")) == list(range(5))
    copy = tmp_path / "copy"
    copy.mkdir()
    shutil.copy(path, copy / "killed.gdr")
    with pytest.raises(RunFileError, match=r"killed\.gdr-wal"):
        open_run(copy / "killed.gdr")
    shutil.copy(str(path) + "-wal", copy / "killed.gdr-wal")  # with it: the steps are back
    with open_run(copy / "killed.gdr") as run:
        assert list(run.steps("s")) == list(range(5))
    assert sorted(os.listdir(copy)) == ["killed.gdr", "killed.gdr-wal"]  # the reader's -shm is gone


READ_ONLY = """
import os, sys
from graddoctor import diagnose, open_run
diagnose(sys.argv[1])  # every module imported while the interpreter's files are readable
os.chdir(sys.argv[2])
if os.getuid() == 0:
    os.setgid(65534); os.setuid(65534)  # nobody: the folder's permissions apply
with open_run("closed.gdr") as run:
    print(len(run.steps("grad_norm")), diagnose("closed.gdr").kinds() == [])
with open_run("killed.gdr") as run:
    print(len(run.steps("s")))
"""


def test_a_read_only_folder_reads_closed_and_killed_runs(tmp_path):
    folder = tempfile.mkdtemp(prefix="graddoctor-ro-")  # outside pytest's private tmp
    try:
        monitored_run(os.path.join(folder, "closed.gdr"))
        shutil.copy(os.path.join(folder, "closed.gdr"), tmp_path / "warm-up.gdr")
        killed = _killed_run(tmp_path)
        for suffix in ("", "-wal"):
            shutil.copy(str(killed) + suffix, os.path.join(folder, "killed.gdr" + suffix))
        for name in os.listdir(folder):
            os.chmod(os.path.join(folder, name), stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
        os.chmod(
            folder,
            stat.S_IRWXU & ~stat.S_IWUSR
            | stat.S_IRGRP
            | stat.S_IXGRP
            | stat.S_IROTH
            | stat.S_IXOTH,
        )
        before = sorted(os.listdir(folder))
        done = subprocess.run(
            [sys.executable, "-c", READ_ONLY, tmp_path / "warm-up.gdr", folder],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.split() == ["3", "True", "5"]
        assert sorted(os.listdir(folder)) == before
    finally:
        os.chmod(folder, stat.S_IRWXU)
        shutil.rmtree(folder)


@pytest.mark.parametrize("name", ["what?.gdr", "run#1.gdr", "100%.gdr", "a?mode=rwc#x%20.gdr"])
def test_odd_names_are_read_and_no_stray_file_appears(tmp_path, name):
    small_run(tmp_path / name)
    with open_run(tmp_path / name) as run:
        assert list(run.steps("grad_norm")) == [0, 1, 2]
    assert os.listdir(tmp_path) == [name]


def test_a_query_past_its_time_limit_is_stopped(tmp_path, monkeypatch):
    small_run(tmp_path / "r.gdr")
    monkeypatch.setattr(_connect, "QUERY_SECONDS", 0.3)
    run = open_run(tmp_path / "r.gdr")
    start = time.monotonic()
    with pytest.raises(RunFileError, match="reading took longer than"):
        run._query(
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"
        )
    assert time.monotonic() - start < 5
    assert list(run.steps("grad_norm")) == [0, 1, 2]  # the connection still works


def test_show_step_beyond_int64_is_just_not_recorded(tmp_path):
    small_run(tmp_path / "r.gdr")
    with pytest.raises(KeyError, match="at step 9223372036854775808"):
        open_run(tmp_path / "r.gdr").at("grad_norm", 2**63)


def _craft(path, statements):
    conn = sqlite3.connect(path)
    conn.executescript(statements)
    conn.commit()
    conn.close()


HEADER = """
CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT INTO meta VALUES ('format', '"graddoctor-run"'), ('schema_version', '1');
CREATE TABLE layer_names(grp TEXT, idx INTEGER, name TEXT);
CREATE TABLE stat_groups(stat TEXT, grp TEXT);
CREATE TABLE scalars(step INTEGER, name TEXT, value REAL);
CREATE TABLE events(step INTEGER, kind TEXT, payload TEXT);
"""
STATS = "CREATE TABLE stats(step INTEGER, stat TEXT, value BLOB);"


@pytest.mark.parametrize(
    ("statements", "message"),
    [
        (
            HEADER + "CREATE VIEW stats(step, stat, value) AS WITH RECURSIVE r(n) AS "
            "(SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT n, 'grad_norm', x'00000000' FROM r;",
            "stats is a view, not a plain table",
        ),
        (
            HEADER + "CREATE TABLE stats(step TEXT, stat TEXT, value BLOB);",
            r"stats\.step is declared 'TEXT'",
        ),
        (
            HEADER.replace("CREATE TABLE events(step INTEGER, kind TEXT, payload TEXT);", "")
            + STATS,
            "no events table",
        ),
        (
            HEADER + STATS + "INSERT INTO meta VALUES ('model', '[[[[');",
            "meta 'model' is not valid JSON",
        ),
        (
            HEADER + STATS + "INSERT INTO meta VALUES ('model', '{\"modules\": [1]}');",
            "meta 'model' does not have the shape",
        ),
        (
            HEADER + STATS + "INSERT INTO layer_names VALUES ('p', 0, 'a'), ('p', 5, 'b');",
            "not numbered 0..n-1",
        ),
        (
            HEADER
            + STATS
            + "INSERT INTO meta VALUES ('execution_order', '\""
            + "[" * 100_000
            + "\"');",
            "meta 'execution_order' does not have the shape",
        ),
    ],
)
def test_crafted_schemas_are_refused_when_opened(tmp_path, statements, message):
    path = tmp_path / "crafted.gdr"
    _craft(path, statements)
    start = time.monotonic()
    with pytest.raises(RunFileError, match=message):
        open_run(path)
    assert time.monotonic() - start < 5


@pytest.mark.parametrize(
    ("rows", "read", "message"),
    [
        (
            "INSERT INTO stats VALUES (NULL, 'g', x'0000803f');",
            lambda r: r.series("g"),
            "is malformed",
        ),
        ("INSERT INTO stats VALUES (0, 'g', 'text');", lambda r: r.series("g"), "is malformed"),
        (
            "INSERT INTO stats VALUES (0, 'g', x'0000803f0000803f0000803f');",
            lambda r: r.at("g"),
            "12 bytes for 2",
        ),
        (
            "INSERT INTO scalars VALUES (0, 'loss', 'high');",
            lambda r: r.scalars("loss"),
            "holds str",
        ),
        (
            "INSERT INTO scalars VALUES ('zero', 'loss', 1.0);",
            lambda r: r.scalars("loss"),
            "not an integer",
        ),
        ("INSERT INTO events VALUES (0, 'e', '[1]');", lambda r: r.events(), "no JSON object"),
    ],
)
def test_crafted_rows_are_refused_when_read(tmp_path, rows, read, message):
    path = tmp_path / "rows.gdr"
    _craft(
        path,
        HEADER + STATS + "INSERT INTO layer_names VALUES ('p', 0, 'a'), ('p', 1, 'b');"
        "INSERT INTO stat_groups VALUES ('g', 'p');" + rows,
    )
    with open_run(path) as run, pytest.raises(RunFileError, match=message):
        read(run)


def test_many_names_and_empty_blobs_are_refused_in_bounded_memory(tmp_path):
    import tracemalloc

    path = tmp_path / "bomb.gdr"
    names = 20_000
    conn = sqlite3.connect(path)
    conn.executescript(HEADER + STATS)
    conn.executemany(
        "INSERT INTO layer_names VALUES ('parameters', ?, ?)", [(i, f"p{i}") for i in range(names)]
    )
    conn.executemany(
        "INSERT INTO stat_groups VALUES (?, 'parameters')",
        [(s,) for s in ("grad_norm", "weight_norm")],
    )
    conn.executemany(
        "INSERT INTO stats VALUES (?, 'grad_norm', ?)", [(i, b"\0\0\0\0") for i in range(names)]
    )
    conn.commit()
    conn.close()
    tracemalloc.start()
    try:
        with pytest.raises(RunFileError, match="declares 20000 columns over 20000 steps"):
            diagnose(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 200 * 2**20  # not the 3.2 GB a dense 20000 x 20000 float64 array takes


def test_empty_and_not_sqlite_files_name_themselves(tmp_path):
    empty = tmp_path / "empty.gdr"
    empty.write_bytes(b"")
    with pytest.raises(RunFileError, match=f"{empty} is empty or truncated"):
        open_run(empty)
    folder = tmp_path / "folder.gdr"
    folder.mkdir()
    with pytest.raises(RunFileError, match="is a folder"):
        open_run(folder)


def test_writer_and_reader_in_one_process(tmp_path):
    path = tmp_path / "same.gdr"
    writer = RunWriter(path, commit_every=1)
    writer.define_group("g", ["x"])
    writer.define_stats("g", ["s"])
    for step in range(3):
        writer.add_stat(step, "s", np.ones(1))
        writer.commit()
        with open_run(path) as run:
            assert list(run.steps("s")) == list(range(step + 1))
    writer.close()
    assert os.listdir(tmp_path) == ["same.gdr"]
