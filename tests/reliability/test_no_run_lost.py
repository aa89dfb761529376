"""No run lost: commits on a pause, at interpreter exit and on SIGTERM (the user's handler kept)."""

from __future__ import annotations

import os
import signal
import textwrap
import time

import numpy as np

from graddoctor import RunFileError, open_run

from .helpers import TRAIN, python, spawn

# 20 steps with commits far away in steps and time, then a pause; argv: path, then a mode
WRITER = textwrap.dedent(
    """
    import signal, sys, time
    import numpy as np
    from graddoctor import RunWriter
    path, mode = sys.argv[1], sys.argv[2]
    if mode == "user-handler":
        def handler(signum, frame):
            print("user handler", flush=True)
            sys.exit(3)
        signal.signal(signal.SIGTERM, handler)
    elif mode == "ignore":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    writer = RunWriter(path, commit_every=1000, commit_seconds=1 if mode == "pause" else 1e9)
    writer.define_group("parameters", ["a", "b"])
    writer.define_stats("parameters", ["grad_norm"])
    for step in range(20):
        writer.add_stat(step, "grad_norm", np.array([step, 1.0]))
        writer.add_scalar(step, "loss", 1.0 / (step + 1))
    if mode == "exit":
        sys.exit(0)  # no close(): the atexit hook commits
    print("ready", flush=True)
    for _ in range(600):
        time.sleep(0.05)
    print("still alive", flush=True)
    """
)


def _steps(path) -> list[int]:
    with open_run(path) as run:
        return [int(s) for s in run.steps("grad_norm")]


def _losses(path) -> np.ndarray:
    try:
        with open_run(path) as run:
            return run.scalars("loss")[0]
    except (FileNotFoundError, RunFileError):
        return np.zeros(0)


def _wait_for_steps(path, steps: int, seconds: float) -> float:
    """Seconds until ``steps`` steps are committed (read live, as another process would)."""
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        if len(_steps(path)) >= steps:
            break
        time.sleep(0.05)
    return time.monotonic() - start


def _start(path, mode):
    proc = spawn(WRITER, path, mode)
    assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
    return proc


def test_sigkill_during_a_pause_keeps_the_steps_committed_within_commit_seconds(tmp_path):
    path = tmp_path / "paused.gdr"
    proc = _start(path, "pause")  # commit_seconds=1, then a pause: evaluation, checkpointing...
    waited = _wait_for_steps(path, 20, seconds=10)
    proc.kill()
    proc.wait()
    assert _steps(path) == list(range(20))
    assert waited < 5  # commit_seconds=1, with slack for a loaded CI machine


def test_interpreter_exit_commits_a_writer_never_closed(tmp_path):
    path = tmp_path / "exit.gdr"
    done = python(WRITER, path, "exit")
    assert done.returncode == 0, done.stderr
    assert _steps(path) == list(range(20))


def test_sigterm_commits_then_ends_the_process_as_by_default(tmp_path):
    path = tmp_path / "term.gdr"
    proc = _start(path, "default")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == -signal.SIGTERM  # the default action: killed by the signal
    assert _steps(path) == list(range(20))


def test_sigterm_commits_then_calls_the_users_handler(tmp_path):
    path = tmp_path / "user.gdr"
    proc = _start(path, "user-handler")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 3
    assert proc.stdout.read().strip() == "user handler"
    assert _steps(path) == list(range(20))


def test_sigterm_ignored_by_the_user_stays_ignored(tmp_path):
    path = tmp_path / "ignored.gdr"
    proc = _start(path, "ignore")
    proc.send_signal(signal.SIGTERM)
    _wait_for_steps(path, 20, seconds=10)
    time.sleep(0.2)
    assert proc.poll() is None  # still running
    assert _steps(path) == list(range(20))  # and committed
    proc.kill()
    proc.wait()


MONITOR_PAUSE = (
    TRAIN
    + """
mon = Monitor(model, opt, path=sys.argv[1], commit_every=1000, commit_seconds=1)
train(mon, 20)
print("ready", flush=True)
time.sleep(60)
"""
)


def test_monitor_sigkill_during_a_pause_keeps_every_statistic(tmp_path):
    path = tmp_path / "monitor.gdr"
    proc = spawn(MONITOR_PAUSE, path)
    assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
    start = time.monotonic()  # commit_seconds=1: the loss scalars are committed on time today
    while time.monotonic() - start < 10 and len(_losses(path)) < 20:
        time.sleep(0.05)
    time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    with open_run(path) as run:
        assert list(run.scalars("loss")[0]) == list(range(20))
        assert list(run.steps("grad_norm")) == list(range(20))  # collected from the device


def test_a_forked_child_never_writes_nor_waits_on_its_parents_run(tmp_path):
    import multiprocessing
    import threading

    import numpy as np

    from graddoctor import RunWriter

    path = tmp_path / "parent.gdr"
    writer = RunWriter(path, commit_every=1000, commit_seconds=1e9)
    writer.define_group("g", ["x"])
    writer.define_stats("g", ["s"])
    writer.add_stat(0, "s", np.ones(1))
    held, release = threading.Event(), threading.Event()

    def hold_the_lock():  # another thread holds the writer's lock at the moment of the fork
        with writer.lock:
            held.set()
            release.wait(10)

    holder = threading.Thread(target=hold_the_lock)
    holder.start()
    held.wait(10)
    context = multiprocessing.get_context("fork")
    child = context.Process(target=lambda: (writer.add_stat(1, "s", np.ones(1)), writer.close()))
    child.start()
    child.join(20)
    release.set()
    holder.join()
    assert child.exitcode == 0  # it neither hung on the copied lock nor raised
    writer.add_stat(2, "s", np.ones(1))
    writer.close()
    with open_run(path) as run:
        assert list(run.steps("s")) == [0, 2]  # the child's step 1 went nowhere
