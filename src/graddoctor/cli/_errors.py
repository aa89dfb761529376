"""Every bad input ends a command with exit 2 and one line naming what is wrong, never a traceback.

Exit codes: 0 healthy, 1 findings, 2 bad input (and failures the input causes: a model
that raises, an output that cannot be written), 3 insufficient data to judge a run.
``--debug`` (or ``GRADDOCTOR_DEBUG=1``) prints the traceback as well.
"""

from __future__ import annotations

import contextlib
import os
import sys
import traceback
from collections.abc import Iterator
from typing import Any, NoReturn

import click
import typer
from rich.text import Text

from .._render_text import inert_text

EXIT_BAD_INPUT = 2
_debug = [bool(os.environ.get("GRADDOCTOR_DEBUG"))]


def set_debug(on: bool) -> None:
    """Show tracebacks of errors (``--debug``)."""
    _debug[0] = on or bool(os.environ.get("GRADDOCTOR_DEBUG"))


def describe(err: BaseException) -> str:
    """One line saying what went wrong (our messages as they are; others with their type)."""
    if isinstance(err, OSError) and err.filename is not None and err.strerror:
        return f"{err.filename}: {err.strerror}"  # a system error: name the path
    text = str(err.args[0]) if isinstance(err, KeyError) and err.args else str(err)
    if isinstance(err, (ValueError, TypeError, KeyError, OSError)) and text:
        return text
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def fail(console: Any, message: str) -> NoReturn:
    """Print ``error: message`` on one line (and the traceback with ``--debug``); exit 2."""
    if _debug[0] and sys.exc_info()[0] is not None:
        traceback.print_exc(file=sys.stderr)
    line = " ".join(str(message).split())
    console.print(
        Text("error: ", style="bold red") + inert_text(line), soft_wrap=True, highlight=False
    )
    raise typer.Exit(EXIT_BAD_INPUT)


@contextlib.contextmanager
def guard(console: Any, prefix: str = "") -> Iterator[None]:
    """Turn any exception of the body into :func:`fail` (``prefix`` + what went wrong)."""
    try:
        yield
    except (click.exceptions.Exit, click.exceptions.ClickException, click.exceptions.Abort):
        raise
    except (Exception, SystemExit) as err:
        fail(console, prefix + describe(err))


def check_range(console: Any, option: str, value: int, low: int, high: int) -> None:
    """Exit 2 unless ``low <= value <= high``."""
    if not low <= value <= high:
        fail(console, f"{option} must be between {low} and {high}, got {value}")


def move_debug_flag(args: list[str]) -> list[str]:
    """``--debug`` written after the command moved before it (``run`` passes options to its script)."""
    cut = args.index("--") if "--" in args else len(args)
    command = next((a for a in args[:cut] if not a.startswith("-")), None)
    if command in (None, "run") or "--debug" not in args[:cut]:
        return args
    rest = [a for i, a in enumerate(args) if not (i < cut and a == "--debug")]
    return ["--debug", *rest]
