"""The ``graddoctor`` command: a thin typer layer over the library.

It starts without torch: ``--help`` and bad options answer in a fraction of a second, and
each command imports the library in its body, after its options are checked.

Each command checks its options, calls the library and prints; the printing lives beside
it: ``_console`` (the per-layer table), ``_progress`` (progress bars), ``_demo`` (what
``graddoctor demo`` shows) and ``_run_command`` (``graddoctor run``). ``_errors`` turns
every failure into exit 2 and one line, ``_outputs`` checks output paths first and
``_targets`` imports ``PKG.MODULE:FUNCTION`` targets.
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich.markup import escape

from ..report.figures import FIGURES
from ._console import make_console
from ._errors import EXIT_BAD_INPUT, check_range, fail, guard, move_debug_flag, set_debug
from ._outputs import output_file, output_folder

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

__all__ = ["EXIT_BAD_INPUT", "app", "main"]


@app.callback()
def _options(
    debug: bool = typer.Option(False, "--debug", help="on an error, print its traceback too"),
) -> None:
    set_debug(debug)


@app.command()
def show(
    run_path: Path = typer.Argument(
        ..., metavar="RUN.gdr", help="a run file written by the Monitor"
    ),
    step: int | None = typer.Option(None, "--step", help="the step to show (default: the last)"),
) -> None:
    """Per-layer table of one recorded step, in depth order, with a log10 gradient-norm bar."""
    from ._console import layer_table

    with guard(console), _opened(run_path) as run:
        from ..monitor._budget import describe_schedule
        from ..monitor._guard_events import guard_events
        from ..views import layer_rows

        found, rows = layer_rows(run, step)
        last = run.steps()
        table = layer_table(
            rows, found, title=f"{run_path} · step {found} of {int(last[-1]) if last.size else 0}"
        )
        schedule = describe_schedule(run.meta.get("schedule"))
        interventions = guard_events(run)
    console.print(table)
    if schedule:
        console.print(schedule, markup=False)
    for event in interventions:  # what the training Guard did (graddoctor.Guard)
        detail = event.get("reason") or f"norm {event.get('grad_norm', 0):.3g} > {event.get('threshold', 0):.3g}"
        console.print(f"step {event['step']}: {event['kind'].replace('_', ' ')} ({detail})", markup=False)


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


@app.command()
def checkup(
    target: str = typer.Argument(
        ..., metavar="PKG.MODULE:FUNCTION", help="a function returning a graddoctor.Problem"
    ),
    steps: int = typer.Option(30, "--steps", help="training steps to record"),
    as_json: bool = typer.Option(False, "--json", help="print Diagnosis.to_json()"),
    out: Path | None = typer.Option(None, "--out", "-o", help="run file to write"),
) -> None:
    """Train a copy of the problem's model briefly and diagnose it. Exit 0 healthy, 1 findings, 2 bad input, 3 insufficient data."""
    check_range(console, "--steps", steps, 1, MAX_STEPS)
    if out is not None:
        output_file(console, "--out", out, "checkup.gdr")
    problem = _problem(target)
    from ..checkup import checkup as run_checkup

    with guard(console, f"the checkup of {target} failed: "):
        diagnosis = run_checkup(problem, steps=steps, run_path=out)
    _report(diagnosis, as_json)


@app.command()
def diagnose(
    run_path: Path = typer.Argument(
        ..., metavar="RUN.gdr", help="a run file written by the Monitor"
    ),
    as_json: bool = typer.Option(False, "--json", help="print Diagnosis.to_json()"),
) -> None:
    """Diagnose a recorded run. Exit 0 healthy, 1 findings, 2 bad input, 3 insufficient data."""
    with guard(console), _opened(run_path) as run:
        from ..diagnosis import diagnose as run_diagnose

        diagnosis = run_diagnose(run)
    _report(diagnosis, as_json)


@app.command()
def compare(
    target: str = typer.Argument(
        ..., metavar="PKG.MODULE:FUNCTION", help="a function returning a graddoctor.Problem"
    ),
    remedy: list[str] = typer.Option(
        [], "--remedy", "-r", help="remedy id (repeat; a+b chains); default: the diagnosis's"
    ),
    steps: int = typer.Option(100, "--steps"),
    seeds: int = typer.Option(1, "--seeds", help="number of seeds (mean and spread)"),
    out: Path = typer.Option(
        Path("runs/compare"), "--out", "-o", help="folder for the run files and comparison.json"
    ),
    as_json: bool = typer.Option(False, "--json", help="print the comparison as JSON"),
) -> None:
    """Run the baseline and remedies side by side from the same start and rank them."""
    check_range(console, "--steps", steps, 1, MAX_STEPS)
    check_range(console, "--seeds", seeds, 1, MAX_SEEDS)
    from ..checkup import checkup as run_checkup
    from ..experiment import compare as run_compare
    from ..remedies import get_remedy
    from ._progress import TrialProgress

    specs = [r.split("+") if "+" in r else r for r in remedy]
    with guard(console):
        for spec in specs:
            for rid in spec if isinstance(spec, list) else [spec]:
                get_remedy(rid)
    output_folder(console, "--out", out)
    problem = _problem(target)
    with guard(console, f"comparing remedies on {target} failed: "):
        if not specs:
            diagnosis = run_checkup(problem, steps=min(steps, 30), run_path=out / "checkup.gdr")
            specs = [r for r in diagnosis.remedies() if get_remedy(r).applicable(problem)[0]][:4]
            console.print(
                f"diagnosis: {escape(diagnosis.summary)} trying: {escape(', '.join(specs) or 'nothing')}"
            )
        with TrialProgress(console, len(specs) + 1, seeds, steps) as advance:
            comparison = run_compare(
                problem, specs, steps=steps, seeds=seeds, out_dir=out, progress=advance
            )
    if as_json:
        print(comparison.to_json())
    else:
        console.print(comparison)
        where = escape(str(out))
        console.print(
            f"runs and comparison.json in {where}; graddoctor report {escape(str(out / 'comparison.json'))} -o report.html"
        )


@app.command()
def plot(
    run_path: Path = typer.Argument(..., metavar="RUN.gdr"),
    kind: str = typer.Option("gradient_flow", "--kind", "-k", help=", ".join(FIGURES)),
    out: Path = typer.Option(..., "--out", "-o", help="PNG or SVG file"),
) -> None:
    """Draw one figure of a recorded run to a PNG or SVG file."""
    if kind not in FIGURES:
        fail(console, f"unknown figure kind {kind!r}; valid kinds: {', '.join(FIGURES)}")
    output_file(console, "--out", out, f"{kind}.png")
    with guard(console), _opened(run_path) as run:
        from ..report import save_figure

        written = save_figure(run, kind, out)
    console.print(f"wrote {escape(str(written))}")


@app.command()
def report(
    source: Path = typer.Argument(
        ..., metavar="RUN_OR_COMPARISON", help="a .gdr run, a comparison.json or its folder"
    ),
    out: Path = typer.Option(Path("report.html"), "--out", "-o", help="the HTML file to write"),
) -> None:
    """Write a self-contained HTML report (findings, figures, comparison, metadata)."""
    if source.is_dir():
        source = source / "comparison.json"
    output_file(console, "--out", out, "report.html")
    with guard(console):
        if source.suffix != ".json":
            _opened(source).close()  # a bad run file is told before the library is imported
        from ..report.html import comparison_report, run_report

        written = (
            comparison_report(source, out) if source.suffix == ".json" else run_report(source, out)
        )
    console.print(f"wrote {escape(str(written))}")


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def run(
    ctx: typer.Context,
    script: Path = typer.Argument(
        ..., metavar="SCRIPT.py", help="an unmodified PyTorch training script"
    ),
    out_dir: Path = typer.Option(
        Path("runs"), "--out-dir", "-o", help="folder of the run files (one per optimizer)"
    ),
    every: int | None = typer.Option(
        None,
        "--every",
        help="record gradient and weight statistics every N steps "
        "(default: gradients every step, weights as a 3% overhead budget allows)",
    ),
    activations_every: int = typer.Option(
        10, "--activations-every", help="record activations every N steps (0: never)"
    ),
    no_locate: bool = typer.Option(
        False, "--no-locate", help="do not replay the first NaN/Inf step to find its source"
    ),
    as_json: bool = typer.Option(
        False, "--json", help="print Diagnosis.to_json(), one line per run"
    ),
    protect: bool = typer.Option(
        False,
        "--guard",
        help="protect training with graddoctor.Guard: skip NaN/Inf updates, clip gradient-norm "
        "spikes, roll back to the last good state with a lower lr on repeated trouble",
    ),
) -> None:
    """Run SCRIPT.py unmodified with a Monitor on every optimizer; print the diagnosis (also on a crash).

    Arguments after -- go to the script: graddoctor run train.py -- --lr 0.1. Exits with the script's exit code.
    """
    if (every is not None and every < 1) or activations_every < 0:
        fail(
            console,
            f"--every must be >= 1 and --activations-every >= 0, got {every} and {activations_every}",
        )
    if not script.is_file():
        fail(console, f"no training script at {script}: pass the path of a Python file")
    output_folder(console, "--out-dir", out_dir)
    from ._run_command import run_script

    with guard(console):
        code = run_script(
            script,
            list(ctx.args),
            out_dir,
            every="auto" if every is None else every,
            activations_every=activations_every,
            locate=not no_locate,
            guard=protect,
            as_json=as_json,
            console=console,
        )
    raise typer.Exit(code)


@app.command()
def demo(
    name: str | None = typer.Argument(
        None, help="one scenario (default: all; see graddoctor.scenarios.available())"
    ),
    out: Path = typer.Option(
        Path("graddoctor-report"), "--out", "-o", help="folder of the HTML report and runs"
    ),
    epochs: int = typer.Option(2, help="epochs of the exploding regression run"),
) -> None:
    """The exploding regression (unscaled targets) step by step, then every built-in scenario diagnosed,
    treated and reported (graddoctor-report/index.html)."""
    check_range(console, "--epochs", epochs, 1, 1000)
    from ..scenarios import available  # the scenarios are built with torch

    if name is not None and name not in available():
        fail(console, f"no scenario {name!r}; scenarios: {', '.join(available())}")
    output_folder(console, "--out", out)
    from ._demo import regression_walkthrough, scenarios_overview

    with guard(console, "the demo failed: "):
        if name in (None, "exploding-regression"):
            regression_walkthrough(
                console, out / "runs" / "exploding-regression-walkthrough.gdr", epochs
            )
        scenarios_overview(console, out, name)


def main() -> None:
    """Entry point of the ``graddoctor`` script."""
    try:
        app(args=move_debug_flag(sys.argv[1:]), prog_name="graddoctor")
    except KeyboardInterrupt:
        sys.exit(130)
