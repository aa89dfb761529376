"""The typer application of the command line, its console and what several commands share."""

from __future__ import annotations

from pathlib import Path

import typer

from ._console import make_console
from ._errors import guard, set_debug

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Find, explain and fix vanishing and exploding gradients.",
)
console = make_console()
# batches are drawn one step at a time and Ctrl-C stops a run, so a large --steps costs
# nothing up front; the bound is the largest step a run file stores (a 64-bit integer)
MAX_STEPS = 2**63 - 1
MAX_SEEDS = 1_000


@app.callback()
def _options(
    debug: bool = typer.Option(False, "--debug", help="on an error, print its traceback too"),
) -> None:
    set_debug(debug)


def _opened(run_path: Path):
    """The run, opened by the store alone: a missing or bad file is told before torch is imported."""
    from ..store import open_run

    return open_run(run_path)


def _report(diagnosis, as_json: bool) -> None:
    if as_json:
        print(diagnosis.to_json())
    else:
        console.print(diagnosis)
    raise typer.Exit(diagnosis.exit_code)  # 0 healthy, 1 findings, 3 insufficient data


def _problem(target: str):
    from ._targets import load_problem

    with guard(console):
        return load_problem(target)
