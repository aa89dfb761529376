"""The demo's report pages, drawn in a second process while the next scenario trains.

Drawing a page (matplotlib, some fifteen figures) takes about as long as training its
scenario on one thread; with a second idle core the two overlap. The worker is this
module :mod:`._page_worker` run as ``python -m graddoctor.demo._page_worker``: a fresh interpreter (a fork would copy
torch's thread pools mid-use; ``multiprocessing``'s spawn would re-run the caller's
script), started once. Each page's ``run_report`` arguments are pickled to a file in the
pages' folder and its path sent on the worker's stdin; the worker answers one line per
page on stdout. Without a worker (one idle core, or none could be started), or for the
pages of a worker that died, each page is written in place.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any


def _write(page: dict) -> None:
    from ..report.html import run_report

    run_report(**page)


class PageWriter:
    """Writes ``run_report(**page)`` pages, in a worker process when ``background``.

    Used as a context manager: leaving it waits for every page and raises the first
    error a page raised.

    Args:
        background: draw in a second process (else in this one, at once).
    """

    def __init__(self, background: bool) -> None:
        self.background = background
        self._worker: subprocess.Popen | None = None
        self._jobs: tempfile.TemporaryDirectory | None = None
        self._pending: list[dict] = []
        self._lost = False

    def __enter__(self) -> PageWriter:
        if self.background:
            package_root = str(Path(__file__).resolve().parents[2])
            path = os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH")) if p)
            env = {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1"}
            try:
                self._worker = subprocess.Popen(
                    [sys.executable, "-m", f"{__package__}._page_worker"], stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE, env=env, text=True,
                )  # fmt: skip
                self._jobs = tempfile.TemporaryDirectory(prefix="graddoctor-pages-")
            except OSError:  # no worker: pages in place
                self._worker = None
        return self

    @property
    def in_background(self) -> bool:
        """Whether pages go to the worker (False if it could not be started or has died)."""
        return self._worker is not None and not self._lost

    def write(self, **page: Any) -> None:
        """Write one page (``run_report``'s arguments), now or in the worker."""
        if not self.in_background or self._jobs is None:
            _write(page)
            return
        job = Path(self._jobs.name) / f"page-{len(self._pending)}.pickle"
        job.write_bytes(pickle.dumps(page))
        try:
            self._worker.stdin.write(f"{job}\n")
            self._worker.stdin.flush()
        except OSError:  # the worker is gone: this page and the rest here
            self._lost = True
            _write(page)
            return
        self._pending.append(page)

    def __exit__(self, *exc: Any) -> None:
        worker = self._worker
        try:
            if worker is None:
                return
            with contextlib.suppress(OSError):  # a dead worker's pipe
                worker.stdin.close()
            if exc[0] is not None:  # the demo failed or was stopped: drop the pages to draw
                worker.kill()
                return
            answers = [line.rstrip("\n") for line in worker.stdout]
            worker.wait()
            for index, page in enumerate(self._pending):
                if index >= len(answers):  # the worker died (killed, out of memory): redo here
                    _write(page)
                elif answers[index] != "ok":
                    raise RuntimeError(f"report page {page['out']}: {answers[index]}")
        finally:
            if worker is not None and worker.poll() is None:
                worker.kill()
                worker.wait()
            if self._jobs is not None:
                self._jobs.cleanup()
