"""One writer per run file: created exclusively, locked while written, never half-created."""

from __future__ import annotations

import multiprocessing
import time

import numpy as np
import pytest
import torch

from graddoctor import Monitor, RunWriter, open_run

from .helpers import small_run

TRIALS = 60


def _race(path, barrier, results, index):
    barrier.wait()
    try:
        writer = RunWriter(path, commit_every=1)
    except FileExistsError as err:
        results[index] = f"refused: {err}"
        return
    writer.define_group("g", ["x"])
    writer.define_stats("g", ["s"])
    writer.add_stat(0, "s", np.array([float(index)]))
    writer.set_meta({"winner": index})
    writer.close()
    results[index] = "wrote"


def test_two_writers_started_together_one_wins_one_is_refused(tmp_path):
    context = multiprocessing.get_context("fork")
    manager = context.Manager()  # one for every trial: starting one costs a process
    for trial in range(TRIALS):
        path = tmp_path / f"race{trial}.gdr"
        barrier, results = context.Barrier(2), manager.list(["", ""])
        workers = [
            context.Process(target=_race, args=(path, barrier, results, i)) for i in range(2)
        ]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(60)
        outcome = sorted(r.split(":")[0] for r in results)
        assert outcome == ["refused", "wrote"], list(results)
        winner = results.index("wrote")
        assert "run file" in results[1 - winner] and str(path) in results[1 - winner]
        with open_run(path) as run:  # nothing lost: the winner's run, whole
            assert run.meta["winner"] == winner and run.at("s")[2].tolist() == [winner]
    manager.shutdown()


def test_overwrite_refuses_a_live_run_and_replaces_a_finished_one(tmp_path):
    path = tmp_path / "live.gdr"
    live = RunWriter(path, commit_every=1)
    live.define_group("g", ["x"])
    live.define_stats("g", ["s"])
    live.add_stat(0, "s", [1.0])
    live.commit()
    with pytest.raises(FileExistsError, match="being written by another process now"):
        RunWriter(path, overwrite=True)
    with pytest.raises(FileExistsError, match="being written"):
        RunWriter(path)
    live.add_stat(1, "s", [2.0])
    live.close()
    assert list(open_run(path).steps("s")) == [0, 1]  # the live run was not touched
    with pytest.raises(
        FileExistsError, match="already exists: choose another path or pass overwrite=True"
    ):
        RunWriter(path)
    RunWriter(path, overwrite=True).close()  # finished: replaced
    assert open_run(path).stat_names() == []


def test_overwrite_refuses_a_run_written_by_another_process(tmp_path):
    path = tmp_path / "other.gdr"
    context = multiprocessing.get_context("fork")
    ready, stop = context.Event(), context.Event()

    def write():
        writer = RunWriter(path)
        ready.set()
        stop.wait(30)
        writer.close()

    process = context.Process(target=write)
    process.start()
    try:
        assert ready.wait(30)
        with pytest.raises(FileExistsError, match="not overwriting a live run"):
            RunWriter(path, overwrite=True)
    finally:
        stop.set()
        process.join(30)
    RunWriter(path, overwrite=True).close()  # its writer is gone: replaceable


def test_a_killed_writers_lock_is_released(tmp_path):
    path = tmp_path / "killed.gdr"
    context = multiprocessing.get_context("fork")
    ready = context.Event()

    def write():
        RunWriter(path)
        ready.set()
        time.sleep(60)

    process = context.Process(target=write)
    process.start()
    assert ready.wait(30)
    process.kill()
    process.join(30)
    RunWriter(path, overwrite=True).close()


def test_stale_sidecars_are_never_replayed_into_a_new_run(tmp_path):
    old, new = tmp_path / "old.gdr", tmp_path / "new.gdr"
    small_run(old, steps=5)
    (tmp_path / "new.gdr-wal").write_bytes(b"garbage that is no WAL of this file" * 100)
    RunWriter(new).close()
    assert open_run(new).stat_names() == []


def test_failed_setup_leaves_no_file_behind(tmp_path):
    path = tmp_path / "setup.gdr"
    circular: dict = {}
    circular["self"] = circular
    with pytest.raises(ValueError, match="meta 'config' cannot be stored as JSON"):
        RunWriter(path, meta={"config": circular})
    assert not path.exists()
    model = torch.nn.Linear(2, 1)
    with pytest.raises(ValueError, match="Circular reference"):
        Monitor(model, torch.optim.SGD(model.parameters(), lr=0.1), path=path, config=circular)
    assert list(tmp_path.iterdir()) == []  # no half-written file blocks the retry
    Monitor(model, torch.optim.SGD(model.parameters(), lr=0.1), path=path, config={"ok": 1}).close()
    assert open_run(path).meta["config"] == {"ok": 1}


def test_bad_paths_are_named(tmp_path):
    with pytest.raises(IsADirectoryError, match=f"{tmp_path} is a folder, not a run file"):
        RunWriter(tmp_path)
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(OSError, match=f"cannot create the folder {blocker}"):
        RunWriter(blocker / "run.gdr")


def test_a_liveness_probe_at_the_creating_moment_does_not_refuse_the_creator(tmp_path):
    """The race CI once lost: the loser's `is_live` probe held a shared lock just when the
    winner asked for its exclusive one, and both were refused."""
    import fcntl
    import os
    import threading

    from graddoctor.store._lock import _lock_new_file

    path = tmp_path / "probe.gdr"
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
    probe = os.open(path, os.O_RDONLY)
    fcntl.flock(probe, fcntl.LOCK_SH)
    threading.Timer(0.05, lambda: os.close(probe)).start()  # a probe lets go in 50 ms
    assert _lock_new_file(fd)
    os.close(fd)

    rival = os.open(path, os.O_RDONLY)
    fcntl.flock(rival, fcntl.LOCK_SH)  # a holder that never lets go: refused, after the wait
    fd = os.open(path, os.O_RDWR)
    started = time.monotonic()
    assert not _lock_new_file(fd, wait_s=0.1)
    assert time.monotonic() - started >= 0.1
    os.close(fd)
    os.close(rival)
