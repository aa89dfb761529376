"""The commands that train: ``checkup``, ``compare``, ``run`` (a user's script), ``demo``."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape

from ._app import MAX_SEEDS, MAX_STEPS, _problem, _report, console
from ._errors import check_range, fail, guard
from ._outputs import output_file, output_folder


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
