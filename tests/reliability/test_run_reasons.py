"""``graddoctor run`` says why monitoring could not start, instead of "no optimizer stepped"."""

from __future__ import annotations

import textwrap

import pytest
from typer.testing import CliRunner

from graddoctor.cli import app

# the script takes its run folder away before its first step: the Monitor cannot start
SCRIPT = textwrap.dedent(
    """
    import shutil, sys
    import torch
    out = sys.argv[1]
    shutil.rmtree(out)
    open(out, "w").write("a file where the run folder was")
    model = torch.nn.Linear(2, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(2):
        opt.zero_grad()
        model(torch.randn(4, 2)).sum().backward()
        opt.step()
    print("training finished")
    """
)


def test_run_prints_why_monitoring_could_not_start(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "train.py").write_text(SCRIPT)
    for _ in range(2):  # also when the same warning was shown before in this process
        if (tmp_path / "runs").is_file():
            (tmp_path / "runs").unlink()
        with pytest.warns(UserWarning, match="not monitoring SGD #0"):  # still shown, as before
            result = CliRunner().invoke(app, ["run", "train.py", "-o", "runs", "--", "runs"])
        assert result.exit_code == 0, (result.output, result.exception)
        assert "training finished" in result.output
        lines = [line for line in result.output.splitlines() if "nothing was recorded" in line]
        assert len(lines) == 1, result.output
        # the first run that cannot start says why: the backward() steps' run (opened at the
        # first backward) or the optimizer's
        assert "not monitoring" in lines[0] and "runs" in lines[0], lines[0]
        assert "warning above" not in result.output
