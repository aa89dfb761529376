"""Print the accuracy of the diagnosis on the labelled suite: ``python -m tests.diagnosis_accuracy``.

Runs ``checkup`` on every problem of ``tests/diagnosis_problems.py`` and compares the
kinds found (at warning or above) with the labels of ``tests/diagnosis/test_diagnosis_suite.py``:
a problem is right when every required kind is found, nothing outside the required and
allowed kinds is, and it is called healthy exactly when nothing is required. Prints one
line per problem, then per kind the problems that needed it and found it (recall) and
the problems where it was reported without being allowed (false alarms), and the
healthy controls called healthy.

Run from the repository root with the package importable (``PYTHONPATH=src``).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import torch

import graddoctor as gd

from .diagnosis.test_diagnosis_suite import LABELS
from .diagnosis_problems import PROBLEMS


def evaluate(folder: Path) -> list[dict]:
    """Checkup of every labelled problem: its label, the kinds found, and whether it is right."""
    rows = []
    for name in sorted(LABELS):
        required, allowed, _ = LABELS[name]
        start = time.perf_counter()
        diagnosis = gd.checkup(PROBLEMS[name](), run_path=folder / f"{name}.gdr")
        found = set(diagnosis.kinds("warning"))
        right = required <= found <= required | allowed and diagnosis.healthy == (not required)
        rows.append({"name": name, "required": required, "allowed": allowed, "found": found,
                     "healthy": diagnosis.healthy, "right": right,
                     "seconds": time.perf_counter() - start})  # fmt: skip
    return rows


def report(rows: list[dict]) -> str:
    """The table and the totals, as printed."""
    lines = [f"{'problem':24} {'expected':54} {'found':54} ok"]
    for r in rows:
        expected = ", ".join(sorted(r["required"])) or "healthy"
        found = ", ".join(sorted(r["found"])) or ("healthy" if r["healthy"] else "(no verdict)")
        lines.append(f"{r['name']:24} {expected:54} {found:54} {'yes' if r['right'] else 'NO'}")
    kinds = sorted({k for r in rows for k in r["required"] | r["found"]})
    lines.append("")
    lines.append(f"{'kind':24} {'recall':>10} {'false alarms':>14}")
    for kind in kinds:
        needed = [r for r in rows if kind in r["required"]]
        hit = [r for r in needed if kind in r["found"]]
        false = [r for r in rows if kind in r["found"] and kind not in r["required"] | r["allowed"]]
        lines.append(f"{kind:24} {len(hit):>4} / {len(needed):<3} {len(false):>14}")
    controls = [r for r in rows if not r["required"]]
    right = sum(r["right"] for r in rows)
    lines.append("")
    lines.append(
        f"healthy controls called healthy: {sum(r['healthy'] for r in controls)} / {len(controls)}"
    )
    lines.append(
        f"problems diagnosed right: {right} / {len(rows)} ({100 * right / len(rows):.0f}%)"
    )
    return "\n".join(lines)


def main() -> int:
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as folder:
        rows = evaluate(Path(folder))
    print(report(rows))
    return 0 if all(r["right"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
