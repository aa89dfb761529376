"""Every bad input to the command line: exit 2 and one line naming what is wrong, never a traceback."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from graddoctor.cli import app, main
from graddoctor.cli._errors import set_debug
from graddoctor.cli._targets import TargetError, load_problem

from .helpers import monitored_run

TARGETS = textwrap.dedent(
    """
    import torch
    from torch import nn
    from graddoctor import Problem

    def raises():
        raise RuntimeError("the dataset server is down")

    def not_a_problem():
        return 42

    def shape_mismatch():
        return Problem(nn.Linear(3, 2), [(torch.randn(4, 5), torch.randn(4, 2))], nn.MSELoss())

    def fine():
        torch.manual_seed(0)
        return Problem(nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1)),
                       [(torch.randn(8, 3), torch.randn(8, 1))], nn.MSELoss())
    """
)


@pytest.fixture
def folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "targets.py").write_text(TARGETS)
    (tmp_path / "syntax.py").write_text("def broken(:\n    pass\n")
    (tmp_path / "crashes.py").write_text("raise ValueError('configuration missing')\n")
    (tmp_path / "missing_dep.py").write_text("import no_such_dependency_xyz\n")
    (tmp_path / "exits.py").write_text("import sys\nsys.exit('usage: exits.py ARGS')\n")
    (tmp_path / "blocker").write_text("a file where a folder is expected")
    monitored_run(tmp_path / "run.gdr")
    return tmp_path


def bad_input(args: list[str], *expected: str) -> str:
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, (args, result.output, result.exception)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    output = result.output.strip()
    assert "Traceback" not in output and len(output.splitlines()) == 1, output
    assert output.startswith("error: "), output
    for text in expected:
        assert text in output, (text, output)
    return output


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        (
            "targets.py:raises",
            ("targets.py:raises raised RuntimeError: the dataset server is down",),
        ),
        ("targets.py:not_a_problem", ("returned int, not a graddoctor.Problem",)),
        ("targets.py:nope", ("targets.py has no function 'nope'",)),
        ("syntax.py:broken", ("cannot import syntax.py: SyntaxError", "line 1")),
        ("crashes.py:f", ("cannot import crashes.py: ValueError: configuration missing",)),
        ("missing_dep.py:f", ("cannot import missing_dep.py", "no_such_dependency_xyz")),
        ("exits.py:f", ("cannot import exits.py: SystemExit: usage: exits.py ARGS",)),
        ("targets:raises", ("targets:raises raised RuntimeError",)),
        ("no_such_module_xyz:f", ("cannot import no_such_module_xyz",)),
        ("no-colon", ("expected PKG.MODULE:FUNCTION",)),
        ("ghost.py:f", ("no Python file at ghost.py",)),
    ],
)
def test_checkup_targets_that_fail(folder, target, expected):
    bad_input(["checkup", target, "--steps", "2"], *expected)


def test_a_model_that_raises_while_training(folder):
    bad_input(
        ["checkup", "targets.py:shape_mismatch", "--steps", "2"],
        "the checkup of targets.py:shape_mismatch failed: RuntimeError",
        "cannot be multiplied",
    )


def test_output_paths(folder):
    bad_input(["checkup", "targets.py:fine", "--out", str(folder)], f"--out {folder} is a folder")
    bad_input(
        ["checkup", "targets.py:fine", "--out", "blocker/x.gdr"],
        "blocker/x.gdr",
        "cannot create the folder blocker",
    )
    bad_input(["plot", "run.gdr", "-o", str(folder)], "is a folder")
    bad_input(["plot", "run.gdr", "-o", "blocker/f.png"], "cannot create the folder blocker")
    bad_input(["report", "run.gdr", "-o", str(folder)], "is a folder")
    bad_input(["report", "run.gdr", "-o", "blocker/r.html"], "cannot create the folder blocker")
    bad_input(
        ["compare", "targets.py:fine", "-r", "clip_norm", "-o", "blocker"],
        "--out blocker is a file, not a folder",
    )
    bad_input(
        ["compare", "targets.py:fine", "-r", "clip_norm", "-o", "blocker/sub"],
        "cannot create the folder",
    )
    bad_input(
        ["run", str(folder / "targets.py"), "-o", "blocker"],
        "--out-dir blocker is a file, not a folder",
    )
    bad_input(
        ["demo", "exploding-regression", "-o", "blocker"], "--out blocker is a file, not a folder"
    )


def test_numbers_out_of_range(folder):
    bad_input(
        ["show", "run.gdr", "--step", str(2**63)],
        "no parameter statistics at step 9223372036854775808",
    )
    bad_input(["show", "run.gdr", "--step", "-1"], "step -1")
    bad_input(["demo", "exploding-regression", "--epochs", "0"], "--epochs must be between 1 and")
    bad_input(
        ["checkup", "targets.py:fine", "--steps", str(2**64)],
        f"--steps must be between 1 and {2**63 - 1}",
    )
    bad_input(["checkup", "targets.py:fine", "--steps", "0"], "--steps must be between")
    bad_input(["compare", "targets.py:fine", "--seeds", "0"], "--seeds must be between")
    bad_input(["plot", "run.gdr", "--kind", "nope", "-o", "x.png"], "unknown figure kind 'nope'")


def test_bad_run_files(folder):
    (folder / "notes.gdr").write_text("these are notes, not a run file")
    bad_input(["diagnose", "notes.gdr"], "notes.gdr is not a graddoctor run file")
    bad_input(["show", "missing.gdr"], "no run file at missing.gdr")
    bad_input(["report", "missing.gdr"], "missing.gdr")
    bad_input(["plot", "notes.gdr", "-o", "x.png"], "notes.gdr")


def test_findings_keep_exit_1_and_healthy_exit_0(folder):
    # a 3-step run is too short for a verdict of health: 3 (insufficient data), not 2
    assert CliRunner().invoke(app, ["diagnose", "run.gdr"]).exit_code in (0, 1, 3)


def test_debug_prints_the_traceback(folder, monkeypatch, capsys):
    outputs = {}
    for args in (["checkup", "targets.py:raises"], ["checkup", "targets.py:raises", "--debug"]):
        monkeypatch.setattr(sys, "argv", ["graddoctor", *args])  # main() as the script calls it
        with pytest.raises(SystemExit) as exited:
            main()
        assert exited.value.code == 2
        outputs[len(args)] = capsys.readouterr()
    quiet, loud = outputs[2], outputs[3]
    assert "Traceback" not in quiet.out + quiet.err
    assert "Traceback" in loud.err and "the dataset server is down" in loud.err
    set_debug(False)


def test_the_target_import_leaves_sys_path_alone(folder):
    (folder / "colorsys.py").write_text(
        "raise SystemExit('the current folder shadowed the standard library')\n"
    )
    before = list(sys.path)
    sys.modules.pop("colorsys", None)
    problem = load_problem("targets:fine")
    assert sys.path == before
    import colorsys  # the standard library's, not ./colorsys.py

    assert Path(colorsys.__file__).parent != folder and problem.model is not None
    with pytest.raises(TargetError):
        load_problem("syntax:broken")
    assert sys.path == before
