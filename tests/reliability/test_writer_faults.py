"""Training is never broken by the run file: a full disk, a file-size limit, a bad row.

Each failure is warned about once; training goes on; what was committed stays readable.
"""

from __future__ import annotations

import sqlite3
import warnings

import numpy as np
import pytest

from graddoctor import RunWriter, open_run

from .helpers import TRAIN, python

FILE_SIZE_LIMIT = (
    TRAIN
    + """
import resource
from graddoctor import diagnose
path, steps, limit = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    with Monitor(model, opt, path=path, commit_every=5) as mon:
        train(mon, steps)
print("steps", mon.step_index)
print("warnings", sum("cannot write the run file" in str(w.message) for w in caught))
print("diagnosis", diagnose(path).summary)
"""
)


def test_file_size_limit_training_completes_and_the_file_opens(tmp_path):
    path = tmp_path / "limited.gdr"
    # about 15 steps fit in 128 KiB; training goes on for 4 times as many
    done = python(FILE_SIZE_LIMIT, path, 60, 128 * 1024)
    assert done.returncode == 0, done.stderr
    lines = dict(line.split(" ", 1) for line in done.stdout.splitlines())
    assert lines["steps"] == "60"  # every step trained
    assert lines["warnings"] == "1"  # warned once
    assert lines["diagnosis"]  # and diagnosed at the end
    with open_run(path) as run:
        steps = run.steps("grad_norm")
    assert 0 < len(steps) < 60 and list(steps) == list(range(len(steps)))  # committed batches kept


class _FullDisk:
    """A connection whose every statement fails like a full disk."""

    def __init__(self, conn):
        self.conn = conn

    def execute(self, *args):
        raise sqlite3.OperationalError("database or disk is full")

    executemany = execute

    def close(self):
        self.conn.close()


def _writer(path, **options) -> RunWriter:
    writer = RunWriter(path, commit_every=1, commit_seconds=1e9, **options)
    writer.define_group("parameters", ["a", "b"])
    writer.define_stats("parameters", ["grad_norm"])
    return writer


def test_disk_full_warns_once_never_raises_and_keeps_the_commits(tmp_path):
    writer = _writer(tmp_path / "full.gdr")
    writer.add_stat(0, "grad_norm", [1.0, 2.0])
    writer.commit()
    writer._file._conn = _FullDisk(writer._file._conn)
    with pytest.warns(
        RuntimeWarning, match=r"cannot write the run file .*full\.gdr .*disk is full"
    ) as caught:
        for step in range(1, 50):
            writer.add_stat(step, "grad_norm", [1.0, 2.0])
            writer.add_scalar(step, "loss", 0.5)
            writer.commit()
        writer.set_meta({"late": 1})
        writer.define_group("modules", ["m"])
        writer.close()
    assert len([w for w in caught if "cannot write" in str(w.message)]) == 1
    assert writer.degraded and writer._stats == [] and writer._scalars == []  # memory stays flat
    with open_run(tmp_path / "full.gdr") as run:
        assert list(run.steps("grad_norm")) == [0]


def test_warnings_as_errors_still_never_raise(tmp_path, capsys):
    writer = _writer(tmp_path / "strict.gdr")
    writer._file._conn = _FullDisk(writer._file._conn)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        writer.add_stat(0, "grad_norm", [1.0, 2.0])
        writer.commit()
        writer.close()
    assert "cannot write the run file" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda w: w.add_scalar(2**63, "loss", 1.0), r"step must be in \[0, 2\*\*63 - 1\]"),
        (lambda w: w.add_scalar(-1, "loss", 1.0), "step must be in"),
        (lambda w: w.add_scalar(1.5, "loss", 1.0), "step must be an integer"),
        (lambda w: w.add_scalar(1, "loss", "high"), "must be a real number"),
        (lambda w: w.add_scalar(1, "loss", 1j), "must be a real number"),
        (lambda w: w.add_scalar(1, "bad\udc80name", 1.0), "not valid text"),
        (lambda w: w.add_stat(1, "grad_norm", [1.0, 2.0, 3.0]), "3 values for 2 columns"),
        (lambda w: w.add_stat(1, "grad_norm", np.array([1 + 1j, 0])), "real numbers"),
        (lambda w: w.add_event(1, "note", [1, 2]), "must be a dict"),
        (lambda w: w.add_event(2**64, "note", {}), "step must be in"),
        (lambda w: w.mark_step(2**63), "step must be in"),
    ],
)
def test_a_bad_row_raises_when_added_and_never_poisons_the_writer(tmp_path, call, message):
    writer = _writer(tmp_path / "rows.gdr")
    with pytest.raises(ValueError, match=message):
        call(writer)
    for step in range(5):  # every later step is recorded
        writer.add_stat(step, "grad_norm", [1.0, 2.0])
        writer.add_scalar(step, "loss", 1.0)
        writer.commit()
    writer.close()
    with open_run(tmp_path / "rows.gdr") as run:
        assert list(run.steps("grad_norm")) == [0, 1, 2, 3, 4]
        assert list(run.scalars("loss")[0]) == [0, 1, 2, 3, 4]


def test_a_row_sqlite_refuses_is_skipped_alone_not_retried(tmp_path):
    writer = _writer(tmp_path / "skip.gdr")
    writer.add_scalar(0, "loss", 1.0)
    writer._scalars.append((2**63, "loss", 1.0))  # past the checks: SQLite cannot bind it
    writer.add_scalar(1, "loss", 2.0)
    with pytest.warns(RuntimeWarning, match="skipped 1 row"):
        writer.commit()
    writer.add_scalar(2, "loss", 3.0)
    writer.close()
    assert not writer.degraded
    with open_run(tmp_path / "skip.gdr") as run:
        assert list(run.scalars("loss")[0]) == [0, 1, 2]


def test_monitor_log_of_an_unstorable_step_keeps_training_recorded(tmp_path):
    import torch

    from graddoctor import Monitor

    model = torch.nn.Linear(3, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with Monitor(model, opt, path=tmp_path / "m.gdr", commit_every=3) as mon:
        with pytest.raises(ValueError, match="step must be in"):
            mon.log(step=2**63, loss=1.0)
        for _ in range(10):
            opt.zero_grad()
            model(torch.randn(4, 3)).sum().backward()
            opt.step()
    assert list(open_run(tmp_path / "m.gdr").steps("grad_norm")) == list(range(10))


RUN_UNDER_LIMIT = """
import resource, sys
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[1]), int(sys.argv[1])))
sys.argv = ["graddoctor", *sys.argv[2:]]
from graddoctor.cli import main
main()
"""


def test_graddoctor_run_under_a_file_size_limit_finishes_the_script_and_diagnoses(tmp_path):
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "examples" / "train_script.py"
    done = python(
        RUN_UNDER_LIMIT,
        128 * 1024,
        "run",
        script,
        "--json",
        "-o",
        tmp_path / "runs",
        "--",
        "--steps",
        "80",  # about 25 steps fit in 128 KiB
        "--print-every",
        "1000",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr  # the script's own exit code
    assert "cannot write the run file" in done.stderr and "Traceback" not in done.stderr
    assert '"schema": "graddoctor.diagnosis/2"' in done.stdout.splitlines()[-1]
    (path,) = (tmp_path / "runs").glob("*.gdr")
    with open_run(path) as run:
        assert 0 < len(run.steps("grad_norm")) < 80
