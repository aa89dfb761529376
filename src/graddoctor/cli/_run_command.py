"""The body of ``graddoctor run SCRIPT.py -- ARGS`` (rich output; imported by the CLI only)."""

from __future__ import annotations

import contextlib
import os
import re
import sys
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

from ..integrations.zero_code import run_instrumented

# the zero-code instrumentation warns this when a Monitor cannot start on an optimizer
NOT_MONITORING = "graddoctor: not monitoring "


@contextlib.contextmanager
def _monitoring_failures() -> Iterator[list[str]]:
    """Why Monitors could not start: the instrumentation's warnings, recorded as they are shown.

    Those warnings are shown every time (not once per place, Python's default), so a
    second run in one process records them too; every other warning is shown as before.
    """
    failures: list[str] = []
    with warnings.catch_warnings():
        warnings.filterwarnings("always", message=re.escape(NOT_MONITORING))
        shown = warnings.showwarning

        def record(message: Any, category: Any, filename: str, lineno: int, *args: Any) -> None:
            if str(message).startswith(NOT_MONITORING):
                failures.append(str(message).removeprefix("graddoctor: "))
            shown(message, category, filename, lineno, *args)

        warnings.showwarning = record
        yield failures


def run_script(
    script: str | os.PathLike,
    args: Sequence[str] = (),
    out_dir: str | os.PathLike = "runs",
    *,
    every: int | str = "auto",
    activations_every: int | None = 10,
    modules: str | list[str] = "leaf",
    locate: bool = True,
    as_json: bool = False,
    console: Any = None,
    guard: bool = False,
) -> int:
    r"""Run a training script under the zero-code Monitor and print each run's diagnosis.

    The script's traceback (when it raised) goes to stderr as Python prints it, then, for
    every optimizer that stepped, the run file's path and its diagnosis, also after a
    crash.

    Args:
        script: path of the training script.
        args: its command-line arguments.
        out_dir: folder of the run files.
        every: record parameter statistics every N steps (``"auto"``: gradient norms every
            step, weights as the Monitor's overhead budget allows).
        activations_every: record activation statistics every N steps (None or 0: never).
        modules: which modules' activations to record (``"leaf"``, ``"all"``, globs).
        locate: replay the first non-finite step to name where NaN/Inf began.
        as_json: print ``Diagnosis.to_json()`` instead of panels, one line per run.
        console: a ``rich.console.Console`` (default: a new one on stdout).
        guard: protect each optimizer with a :class:`~graddoctor.Guard`.

    Returns:
        the script's exit code: 0, its ``sys.exit`` code, 1 when it raised, 130 on Ctrl-C.

    Raises:
        FileNotFoundError: no such script.
        TypeError: ``args`` is one string instead of a list.
    """
    from .._render_text import inert, inert_text
    from ..diagnosis import diagnose

    if console is None:
        from ._console import make_console

        console = make_console()
    with _monitoring_failures() as failures:
        result = run_instrumented(
            script,
            args,
            out_dir,
            every=every,
            activations_every=activations_every or None,
            modules=modules,
            locate=locate,
            guard=guard,
        )
    sys.stdout.flush()
    if result.traceback:
        print(result.traceback, end="", file=sys.stderr)
        sys.stderr.flush()
    if not result.run_paths:
        why = "; ".join(failures) or (
            "no optimizer stepped, or monitoring could not start (see the warnings above)"
        )
        message = inert(f"graddoctor: nothing was recorded: {why}")
        if as_json:
            print(message, file=sys.stderr)
        else:
            console.print(message, style="yellow", markup=False)
    for path in result.run_paths:
        diagnosis = diagnose(path)
        if as_json:
            print(diagnosis.to_json(indent=None))
            continue
        console.rule(inert_text(f"graddoctor · {path.name}", style="bold"))
        if result.error is not None:
            console.print(
                inert_text(
                    f"the script ended with {type(result.error).__name__}: ", style="bold red"
                )
                + inert_text(result.error),
                highlight=False,
            )
        console.print(diagnosis)
    return result.exit_code
