"""Packaging contracts: a light import, and the command line."""

import subprocess
import sys

from typer.testing import CliRunner


def test_import_does_not_pull_heavy_optional_modules():
    code = (
        "import sys, graddoctor\n"
        "heavy = [m for m in ('matplotlib', 'rich', 'typer') if m in sys.modules]\n"
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
    out = tmp_path / "demo.gdr"
    result = runner.invoke(app, ["demo", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "became non-finite at step" in result.output
    assert "fc1" in result.output and "fc2" in result.output
    shown = runner.invoke(app, ["show", str(out), "--step", "0"])
    assert shown.exit_code == 0 and "fc1" in shown.output and "Linear" in shown.output
    bad = runner.invoke(app, ["show", str(tmp_path / "missing.gdr")])
    assert bad.exit_code == 2 and "no run file" in bad.output
