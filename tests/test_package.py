"""Packaging contracts: a light import, and the command line."""

import subprocess
import sys

from typer.testing import CliRunner


def test_import_does_not_pull_heavy_optional_modules():
    code = (
        "import sys, graddoctor\n"
        "heavy = [m for m in ('matplotlib', 'rich', 'typer', 'keras') if m in sys.modules]\n"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"import graddoctor imported {out.stdout.strip()}"


def test_public_api_is_explicit():
    import graddoctor

    for name in graddoctor.__all__:
        assert hasattr(graddoctor, name), name


def test_cli_demo_then_show(tmp_path):
    from graddoctor.cli import app

    runner = CliRunner()
    result = runner.invoke(app, ["demo", "exploding-regression", "--out", str(tmp_path / "report")])
    out = tmp_path / "report" / "runs" / "exploding-regression-walkthrough.gdr"
    assert result.exit_code == 0, result.output
    assert (tmp_path / "report" / "index.html").exists()
    assert (tmp_path / "report" / "exploding-regression.html").exists()
    assert "became non-finite at step" in result.output
    assert "nonfinite" in result.output and "exploding_gradients" in result.output
    assert "standardize_target" in result.output
    assert "fc1" in result.output and "fc2" in result.output
    shown = runner.invoke(app, ["show", str(out), "--step", "0"])
    assert shown.exit_code == 0 and "fc1" in shown.output and "Linear" in shown.output
    bad = runner.invoke(app, ["show", str(tmp_path / "missing.gdr")])
    assert bad.exit_code == 2 and "no run file" in bad.output


def test_cli_checkup_exit_codes_and_json(tmp_path, monkeypatch):
    import json

    from graddoctor.cli import app

    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    examples = str(__import__("pathlib").Path(__file__).resolve().parents[1] / "examples" / "problems.py")
    sick = runner.invoke(app, ["checkup", f"{examples}:deep_sigmoid", "--steps", "5", "--json"])
    assert sick.exit_code == 1, sick.output
    data = json.loads(sick.output)
    assert data["schema"] == "graddoctor.diagnosis/2" and data["healthy"] is False
    assert data["findings"][0]["kind"] == "vanishing_gradients"
    healthy = runner.invoke(app, ["checkup", f"{examples}:healthy_relu", "--steps", "5", "--json"])
    assert healthy.exit_code == 0 and json.loads(healthy.output)["healthy"] is True
    assert runner.invoke(app, ["checkup", "no_such_module:f"]).exit_code == 2
    assert runner.invoke(app, ["checkup", f"{examples}:missing"]).exit_code == 2
    run_path = data["run_path"]
    again = runner.invoke(app, ["diagnose", run_path, "--json"])
    assert again.exit_code == 1 and json.loads(again.output)["findings"] == data["findings"]
    assert runner.invoke(app, ["diagnose", "missing.gdr"]).exit_code == 2
