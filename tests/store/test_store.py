"""The run file: round trips, crash safety, concurrent reading, and bad files."""

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from graddoctor import RunFileError, RunWriter, open_run
from graddoctor.store import SCHEMA_VERSION


def write_steps(path, steps, commit_every=1):
    w = RunWriter(path, commit_every=commit_every, commit_seconds=1e9)
    w.define_group("parameters", ["a", "b", "c"])
    w.define_stats("parameters", ["grad_norm"])
    for s in range(steps):
        w.add_stat(s, "grad_norm", np.array([s, s + 0.5, -s], dtype=np.float32))
        w.add_scalar(s, "loss", 1.0 / (s + 1))
        if w.commit_due():
            w.commit()
    return w


def test_round_trip(tmp_path):
    w = write_steps(tmp_path / "r.gdr", 5, commit_every=2)
    w.close()
    run = open_run(tmp_path / "r.gdr")
    steps, names, values = run.series("grad_norm")
    assert list(steps) == [0, 1, 2, 3, 4] and names == ["a", "b", "c"]
    np.testing.assert_array_equal(values[3], [3, 3.5, -3])
    assert run.series("grad_norm", names=["c", "a"])[2][4].tolist() == [-4, 4]
    np.testing.assert_allclose(run.scalars("loss")[1], [1, 1 / 2, 1 / 3, 1 / 4, 1 / 5])
    with pytest.raises(KeyError, match="no statistic 'nope'"):
        run.series("nope")


def test_reader_reads_a_snapshot_and_refreshes_while_writer_writes(tmp_path):
    path = tmp_path / "live.gdr"
    w = write_steps(path, 3, commit_every=1)
    run = open_run(path)
    assert len(run.steps("grad_norm")) == 3
    w.add_stat(3, "grad_norm", np.zeros(3))
    w.commit()
    assert len(run.steps("grad_norm")) == 3  # one snapshot: reads agree with each other
    assert len(open_run(path).steps("grad_norm")) == 4  # a new reader sees the new batch
    run.refresh()
    assert len(run.steps("grad_norm")) == 4  # and so does a refreshed one
    run.close()
    w.close()


WRITER = textwrap.dedent(
    """
    import sys, time, numpy as np, torch
    from graddoctor import Monitor
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x, y = torch.randn(16, 4), torch.randn(16, 1)
    mon = Monitor(model, opt, path=sys.argv[1], commit_every=5, commit_seconds=1e9)
    step = 0
    while True:
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        opt.step()
        mon.log(loss=loss)
        step += 1
        if step % 5 == 0:
            print(step, flush=True)
            time.sleep(0.01)
    """
)


def test_sigkill_loses_at_most_the_uncommitted_batch(tmp_path):
    path = tmp_path / "killed.gdr"
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True
    )
    committed = 0
    deadline = time.monotonic() + 60
    while committed < 40 and time.monotonic() < deadline:
        committed = int(proc.stdout.readline())
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    run = open_run(path)
    steps = run.steps("grad_norm")
    assert len(steps) >= committed - 5 and len(steps) % 5 == 0
    assert list(steps) == list(range(len(steps)))
    _, names, values = run.series("grad_norm")
    assert values.shape == (len(steps), 4) and np.all(np.isfinite(values))
    loss_steps, losses = run.scalars("loss")
    assert list(loss_steps) == list(range(len(steps))) and np.all(losses > 0)


def test_not_a_run_file(tmp_path):
    text = tmp_path / "notes.gdr"
    text.write_text("hello, this is not sqlite at all")
    with pytest.raises(RunFileError, match="not an SQLite database"):
        open_run(text)
    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("CREATE TABLE t(x)").connection.commit()
    with pytest.raises(RunFileError, match="not a graddoctor run"):
        open_run(other)
    with pytest.raises(FileNotFoundError):
        open_run(tmp_path / "missing.gdr")
    empty = tmp_path / "empty.gdr"
    empty.write_bytes(b"")
    with pytest.raises(RunFileError, match="empty or truncated"):
        open_run(empty)


def test_truncated_or_corrupt_file(tmp_path):
    path = tmp_path / "big.gdr"
    w = write_steps(path, 300, commit_every=50)
    w.close()
    data = path.read_bytes()
    truncated = tmp_path / "truncated.gdr"
    truncated.write_bytes(data[: len(data) // 3])
    with pytest.raises(RunFileError, match="corrupt or truncated"):
        run = open_run(truncated)
        run.series("grad_norm")
    corrupt = tmp_path / "corrupt.gdr"
    garbage = bytearray(data)
    garbage[100:4096] = os.urandom(4096 - 100)
    corrupt.write_bytes(bytes(garbage))
    with pytest.raises(RunFileError):
        run = open_run(corrupt)
        run.series("grad_norm")


def test_newer_schema_is_refused(tmp_path):
    path = tmp_path / "future.gdr"
    w = write_steps(path, 1)
    w.set_meta({"schema_version": SCHEMA_VERSION + 1})
    w.close()
    with pytest.raises(RunFileError, match="newer than this graddoctor reads"):
        open_run(path)


def test_group_extension_for_longer_sequences(tmp_path):
    w = RunWriter(tmp_path / "t.gdr")
    w.define_group("time:rnn", ["0", "1"])
    w.define_stats("time:rnn", ["time_grad_norm:rnn"])
    w.add_stat(0, "time_grad_norm:rnn", np.array([1.0, 2.0]))
    w.define_group("time:rnn", ["0", "1", "2"], extend=True)
    w.add_stat(1, "time_grad_norm:rnn", np.array([1.0, 2.0, 3.0]))
    with pytest.raises(ValueError, match="already defined"):
        w.define_group("time:rnn", ["x"])
    w.close()
    _, names, values = open_run(tmp_path / "t.gdr").series("time_grad_norm:rnn")
    assert names == ["0", "1", "2"] and np.isnan(values[0, 2]) and values[1, 2] == 3.0
