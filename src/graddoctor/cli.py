"""The ``graddoctor`` command: a thin typer layer over the library."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from ._console import make_console

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Find, explain and fix vanishing and exploding gradients.")
console = make_console()
EXIT_BAD_INPUT = 2


def _fail(message: str) -> None:
    console.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(EXIT_BAD_INPUT)


@app.command()
def show(
    run_path: Path = typer.Argument(..., metavar="RUN.gdr", help="a run file written by the Monitor"),
    step: int | None = typer.Option(None, "--step", help="the step to show (default: the last)"),
) -> None:
    """Per-layer table of one recorded step, in depth order, with a log10 gradient-norm bar."""
    from ._console import layer_table
    from .layers import layer_rows
    from .store import RunFileError, open_run

    try:
        run = open_run(run_path)
        found, rows = layer_rows(run, step)
    except (FileNotFoundError, RunFileError, KeyError) as err:
        _fail(str(err).strip('"'))
    last = run.steps()
    console.print(layer_table(rows, found, title=f"{run_path} · step {found} of {int(last[-1]) if last.size else 0}"))


def load_problem(target: str):
    """Import ``PKG.MODULE:FUNCTION`` (or ``path/to/file.py:FUNCTION``) and call it for a Problem."""
    import importlib
    import importlib.util

    from .problem import Problem

    module_name, sep, function_name = target.partition(":")
    if not sep or not module_name or not function_name:
        _fail(f"expected PKG.MODULE:FUNCTION, got {target!r}")
    sys.path.insert(0, str(Path.cwd()))
    try:
        if module_name.endswith(".py"):
            spec = importlib.util.spec_from_file_location(Path(module_name).stem, module_name)
            if spec is None or spec.loader is None:
                _fail(f"cannot load {module_name}")
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
        else:
            module = importlib.import_module(module_name)
    except (ImportError, FileNotFoundError) as err:
        _fail(f"cannot import {module_name}: {err}")
    function = getattr(module, function_name, None)
    if not callable(function):
        _fail(f"{module_name} has no function {function_name!r}")
    problem = function()
    if not isinstance(problem, Problem):
        _fail(f"{target} returned {type(problem).__name__}, not a graddoctor.Problem")
    return problem


def _report(diagnosis, as_json: bool) -> None:
    if as_json:
        print(diagnosis.to_json())
    else:
        console.print(diagnosis)
    raise typer.Exit(0 if diagnosis.healthy else 1)


@app.command()
def checkup(
    target: str = typer.Argument(..., metavar="PKG.MODULE:FUNCTION", help="a function returning a graddoctor.Problem"),
    steps: int = typer.Option(30, "--steps", help="training steps to record"),
    as_json: bool = typer.Option(False, "--json", help="print Diagnosis.to_json()"),
    out: Path | None = typer.Option(None, "--out", "-o", help="run file to write"),
) -> None:
    """Train a copy of the problem's model briefly and diagnose it. Exit 0 healthy, 1 findings, 2 bad input."""
    from .diagnosis import checkup as run_checkup

    problem = load_problem(target)
    try:
        diagnosis = run_checkup(problem, steps=steps, run_path=out)
    except (ValueError, TypeError) as err:
        _fail(str(err))
    _report(diagnosis, as_json)


@app.command()
def diagnose(
    run_path: Path = typer.Argument(..., metavar="RUN.gdr", help="a run file written by the Monitor"),
    as_json: bool = typer.Option(False, "--json", help="print Diagnosis.to_json()"),
) -> None:
    """Diagnose a recorded run. Exit 0 healthy, 1 findings, 2 bad input."""
    from .diagnosis import diagnose as run_diagnose
    from .store import RunFileError

    try:
        diagnosis = run_diagnose(run_path)
    except (FileNotFoundError, RunFileError) as err:
        _fail(str(err))
    _report(diagnosis, as_json)


@app.command()
def demo(
    out: Path = typer.Option(Path("runs/demo-exploding-regression.gdr"), "--out", "-o", help="run file to write"),
    epochs: int = typer.Option(2, help="epochs of 32 batches, as in the seed"),
) -> None:
    """Seed 004's exploding regression (MLP 10-15-1, SGD lr 0.01, MSE) recorded until it ends in NaN."""
    from ._console import layer_table
    from .demo import run_exploding_regression
    from .layers import layer_rows

    console.rule("[bold]graddoctor demo: exploding regression (seed 004)")
    console.print("1000 x 10 regression data with noise 0.1 (targets std ~180), MLP 10-15-1 with ReLU, "
                  "SGD lr 0.01, MSE, batches of 32: the targets are not standardised.")
    result = run_exploding_regression(out, epochs=epochs, progress=_progress())
    for epoch, loss in enumerate(result.epoch_losses, 1):
        console.print(f"epoch {epoch}: mean loss {loss:.6g}")
    console.print("first losses: " + ", ".join(f"{v:.3g}" for v in result.losses[: result.first_nonfinite_step + 2]))
    console.print(layer_table(*_rows_at(layer_rows, out, 0), title="step 0: gradients are already large"))
    if result.first_bad_gradient_step is not None:
        bad = result.first_bad_gradient_step
        if bad > 0:
            console.print(layer_table(*_rows_at(layer_rows, out, bad - 1), title=f"step {bad - 1}: the last finite gradients"))
        console.print(layer_table(*_rows_at(layer_rows, out, bad), title=f"step {bad}: the gradients overflow"))
    if result.first_nonfinite_step is not None:
        console.print(f"[bold red]the loss became non-finite at step {result.first_nonfinite_step}[/] "
                      f"(gradients first at step {result.first_bad_gradient_step})")
    console.print(f"run file: {out}  (graddoctor show {out} --step N)")
    from .diagnosis import diagnose as run_diagnose

    console.rule("[bold]diagnosis")
    console.print(run_diagnose(out))


def _rows_at(layer_rows, out: Path, step: int):
    found, rows = layer_rows(out, step)
    return rows, found


def _progress():
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    return Progress(TextColumn("training"), BarColumn(), MofNCompleteColumn(), TextColumn("loss {task.fields[loss]}"),
                    console=console, transient=True)


def main() -> None:
    """Entry point of the ``graddoctor`` script."""
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


