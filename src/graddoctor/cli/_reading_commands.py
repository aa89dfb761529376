"""The commands that read a recorded run: ``show``, ``diagnose``, ``plot``, ``report`` (no torch)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape

from ..report.figures import FIGURES
from ._app import _opened, _report, console
from ._errors import fail, guard
from ._outputs import output_file


def show(
    run_path: Path = typer.Argument(
        ..., metavar="RUN.gdr", help="a run file written by the Monitor"
    ),
    step: int | None = typer.Option(None, "--step", help="the step to show (default: the last)"),
) -> None:
    """Per-layer table of one recorded step, in depth order, with a log10 gradient-norm bar."""
    from ._console import layer_table

    with guard(console), _opened(run_path) as run:
        from ..monitor._guard_events import guard_events
        from ..monitor._schedule_text import describe_schedule
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
