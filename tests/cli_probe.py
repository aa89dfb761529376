"""Run a ``graddoctor`` command line by the real entry point in a fresh interpreter, and say
which heavy modules (torch, matplotlib) it had imported when it ended."""

from __future__ import annotations

import json
import subprocess
import sys

PROBE = """
import json, sys
from graddoctor.cli import main

sys.argv = ["graddoctor", *json.loads(sys.argv[1])]
try:
    main()
    code = 0
except SystemExit as exit:
    code = exit.code
heavy = [m for m in ("torch", "matplotlib") if m in sys.modules]
print("\\\\nPROBE " + json.dumps({"code": code, "heavy": heavy}))
"""


def run_command(args: list[str], cwd) -> tuple[int, list[str], str]:
    """``(exit code, heavy modules imported, stdout + stderr)`` of ``graddoctor *args``."""
    out = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(args)],
        capture_output=True,
        text=True,
        check=True,
        cwd=cwd,
    )
    result = json.loads(out.stdout.rpartition("PROBE ")[2])
    return result["code"], result["heavy"], out.stdout + out.stderr
