"""The report-page worker of the demo: ``python -m graddoctor.demo._page_worker``.

Reads one line per page on stdin, the path of a pickled dict of ``run_report``'s
arguments (written by :class:`graddoctor.demo._pages.PageWriter`), draws the page, and
answers one line on stdout: ``ok``, or the error. Nothing else is written to stdout
(prints and warnings of the drawing go to stderr).
"""

from __future__ import annotations

import pickle
import sys
from pathlib import Path


def serve() -> None:
    """Draw the pages named on stdin until it closes, one answer line each."""
    from graddoctor.report.html import run_report

    answers, sys.stdout = sys.stdout, sys.stderr
    for line in sys.stdin:
        try:
            run_report(**pickle.loads(Path(line.strip()).read_bytes()))
            answer = "ok"
        except Exception as err:  # reported to the demo, which raises it there
            answer = f"{type(err).__name__}: {err}".replace("\n", " ")
        print(answer, file=answers, flush=True)


if __name__ == "__main__":
    serve()
