"""The command line starts without torch: help and bad options never import the library's heavy part."""

import json
import subprocess
import sys

# each command line, run by the real entry point in one fresh interpreter, with its exit
# code and which heavy modules were imported by then
PROBE = """
import json, sys
from graddoctor.cli import main

args = json.loads(sys.argv[1])
sys.argv = ["graddoctor", *args]
try:
    main()
    code = 0
except SystemExit as exit:
    code = exit.code
heavy = [m for m in ("torch", "matplotlib") if m in sys.modules]
print("\\nPROBE " + json.dumps({"code": code, "heavy": heavy}))
"""


def _start(args, cwd):
    out = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(args)],
        capture_output=True,
        text=True,
        check=True,
        cwd=cwd,
    )
    result = json.loads(out.stdout.rpartition("PROBE ")[2])
    return result["code"], result["heavy"], out.stdout + out.stderr


def test_help_does_not_import_torch(tmp_path):
    for args in (["--help"], [], ["show", "--help"], ["report", "--help"], ["run", "--help"]):
        code, heavy, output = _start(args, tmp_path)
        assert code in (0, 2) and "Usage" in output, (args, output)
        assert heavy == [], (args, heavy)


def test_argument_errors_exit_2_without_torch(tmp_path):
    cases = {
        ("show",): "Missing argument",
        ("show", "missing.gdr"): "no run file",
        ("diagnose", "missing.gdr"): "no run file",
        ("report", "missing.gdr"): "no run file",
        ("plot", "missing.gdr", "--kind", "nope", "-o", "a.png"): "unknown figure kind",
        ("plot", "missing.gdr", "-o", "a.png"): "no run file",
        ("checkup", "pkg.mod:f", "--steps", "0"): "--steps must be between",
        ("compare", "pkg.mod:f", "--seeds", "0"): "--seeds must be between",
        ("run", "train.py", "--every", "0"): "--every must be >= 1",
        ("run", "missing.py"): "no training script",
        ("demo", "--epochs", "0"): "--epochs must be between",
        ("no-such-command",): "No such command",
    }
    for args, message in cases.items():
        code, heavy, output = _start(list(args), tmp_path)
        assert code == 2 and message in output, (args, code, output)
        assert "Traceback" not in output, (args, output)
        assert heavy == [], (args, heavy)
