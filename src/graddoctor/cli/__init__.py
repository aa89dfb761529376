"""The ``graddoctor`` command: a thin typer layer over the library.

Each command parses its options, calls the library and prints; the printing lives beside it:
``_console`` (the per-layer table), ``_progress`` (progress bars), ``_demo`` (what
``graddoctor demo`` shows) and ``_run_command`` (``graddoctor run``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from ..report.figures import FIGURES
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
    from ..store import RunFileError, open_run
    from ..views import layer_rows
    from ._console import layer_table

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

    from ..problem import Problem

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
    raise typer.Exit(diagnosis.exit_code)  # 0 healthy, 1 findings, 3 insufficient data


@app.command()
def checkup(
    target: str = typer.Argument(..., metavar="PKG.MODULE:FUNCTION", help="a function returning a graddoctor.Problem"),
    steps: int = typer.Option(30, "--steps", help="training steps to record"),
    as_json: bool = typer.Option(False, "--json", help="print Diagnosis.to_json()"),
    out: Path | None = typer.Option(None, "--out", "-o", help="run file to write"),
) -> None:
    """Train a copy of the problem's model briefly and diagnose it. Exit 0 healthy, 1 findings, 2 bad input, 3 insufficient data."""
    from ..checkup import checkup as run_checkup

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
    """Diagnose a recorded run. Exit 0 healthy, 1 findings, 2 bad input, 3 insufficient data."""
    from ..diagnosis import diagnose as run_diagnose
    from ..store import RunFileError

    try:
        diagnosis = run_diagnose(run_path)
    except (FileNotFoundError, RunFileError) as err:
        _fail(str(err))
    _report(diagnosis, as_json)


@app.command()
def compare(
    target: str = typer.Argument(..., metavar="PKG.MODULE:FUNCTION", help="a function returning a graddoctor.Problem"),
    remedy: list[str] = typer.Option([], "--remedy", "-r", help="remedy id (repeat; a+b chains); default: the diagnosis's"),
    steps: int = typer.Option(100, "--steps"),
    seeds: int = typer.Option(1, "--seeds", help="number of seeds (mean and spread)"),
    out: Path = typer.Option(Path("runs/compare"), "--out", "-o", help="folder for the run files and comparison.json"),
    as_json: bool = typer.Option(False, "--json", help="print the comparison as JSON"),
) -> None:
    """Run the baseline and remedies side by side from the same start and rank them."""
    from ..checkup import checkup as run_checkup
    from ..experiment import compare as run_compare
    from ..remedies import get_remedy
    from ._progress import TrialProgress

    problem = load_problem(target)
    specs = [r.split("+") if "+" in r else r for r in remedy]
    try:
        for spec in specs:
            for rid in spec if isinstance(spec, list) else [spec]:
                get_remedy(rid)
        if not specs:
            diagnosis = run_checkup(problem, steps=min(steps, 30), run_path=out / "checkup.gdr")
            specs = [r for r in diagnosis.remedies() if get_remedy(r).applicable(problem)[0]][:4]
            console.print(f"diagnosis: {diagnosis.summary} trying: {', '.join(specs) or 'nothing'}")
        with TrialProgress(console, len(specs) + 1, seeds, steps) as advance:
            comparison = run_compare(problem, specs, steps=steps, seeds=seeds, out_dir=out, progress=advance)
    except (KeyError, ValueError, TypeError) as err:
        _fail(str(err).strip('"'))
    if as_json:
        print(comparison.to_json())
    else:
        console.print(comparison)
        console.print(f"runs and comparison.json in {out}; graddoctor report {out / 'comparison.json'} -o report.html")


@app.command()
def plot(
    run_path: Path = typer.Argument(..., metavar="RUN.gdr"),
    kind: str = typer.Option("gradient_flow", "--kind", "-k", help=", ".join(FIGURES)),
    out: Path = typer.Option(..., "--out", "-o", help="PNG or SVG file"),
) -> None:
    """Draw one figure of a recorded run to a PNG or SVG file."""
    from ..report import save_figure
    from ..store import RunFileError

    try:
        written = save_figure(run_path, kind, out)
    except (FileNotFoundError, RunFileError, ValueError) as err:
        _fail(str(err))
    console.print(f"wrote {written}")


@app.command()
def report(
    source: Path = typer.Argument(..., metavar="RUN_OR_COMPARISON", help="a .gdr run, a comparison.json or its folder"),
    out: Path = typer.Option(Path("report.html"), "--out", "-o", help="the HTML file to write"),
) -> None:
    """Write a self-contained HTML report (findings, figures, comparison, metadata)."""
    from ..report.html import comparison_report, run_report
    from ..store import RunFileError

    if source.is_dir():
        source = source / "comparison.json"
    try:
        written = comparison_report(source, out) if source.suffix == ".json" else run_report(source, out)
    except (FileNotFoundError, RunFileError, ValueError, KeyError) as err:
        _fail(str(err))
    console.print(f"wrote {written}")


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def run(
    ctx: typer.Context,
    script: Path = typer.Argument(..., metavar="SCRIPT.py", help="an unmodified PyTorch training script"),
    out_dir: Path = typer.Option(Path("runs"), "--out-dir", "-o", help="folder of the run files (one per optimizer)"),
    every: int = typer.Option(1, "--every", help="record gradient and weight statistics every N steps"),
    activations_every: int = typer.Option(10, "--activations-every", help="record activations every N steps (0: never)"),
    no_locate: bool = typer.Option(False, "--no-locate", help="do not replay the first NaN/Inf step to find its source"),
    as_json: bool = typer.Option(False, "--json", help="print Diagnosis.to_json(), one line per run"),
) -> None:
    """Run SCRIPT.py unmodified with a Monitor on every optimizer; print the diagnosis (also on a crash).

    Arguments after -- go to the script: graddoctor run train.py -- --lr 0.1. Exits with the script's exit code.
    """
    from ._run_command import run_script

    if every < 1 or activations_every < 0:
        _fail(f"--every must be >= 1 and --activations-every >= 0, got {every} and {activations_every}")
    try:
        code = run_script(script, list(ctx.args), out_dir, every=every, activations_every=activations_every,
                          locate=not no_locate, as_json=as_json, console=console)
    except (FileNotFoundError, TypeError, ValueError) as err:
        _fail(str(err))
    raise typer.Exit(code)


@app.command()
def demo(
    name: str | None = typer.Argument(None, help="one scenario (default: all; see graddoctor.scenarios.available())"),
    out: Path = typer.Option(Path("graddoctor-report"), "--out", "-o", help="folder of the HTML report and runs"),
    epochs: int = typer.Option(2, help="epochs of the exploding regression run (Godoy's unscaled targets)"),
) -> None:
    """The exploding regression (unscaled targets, after Godoy) step by step, then every built-in scenario diagnosed,
    treated and reported (graddoctor-report/index.html)."""
    from ..scenarios import available
    from ._demo import regression_walkthrough, scenarios_overview

    if name is not None and name not in available():
        _fail(f"no scenario {name!r}; scenarios: {', '.join(available())}")
    if name in (None, "exploding-regression"):
        regression_walkthrough(console, out / "runs" / "exploding-regression-walkthrough.gdr", epochs)
    scenarios_overview(console, out, name)


def main() -> None:
    """Entry point of the ``graddoctor`` script."""
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)

