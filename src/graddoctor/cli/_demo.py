"""What ``graddoctor demo`` prints: the regression walkthrough and the scenario table.

The runs themselves are :mod:`graddoctor.demo`'s; this module only presents them.
"""

from __future__ import annotations

import time
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..demo import CorePlan, run_exploding_regression, run_scenarios, torch_threads
from ..diagnosis import diagnose as run_diagnose
from ..integrations._keras_lecture import demo_line as keras_demo_line
from ..views import layer_rows
from ._console import layer_table
from ._progress import training_progress


def regression_walkthrough(console: Console, out: Path, epochs: int) -> None:
    """The exploding regression (unscaled targets) recorded step by step until NaN, then diagnosed.

    Args:
        console: where to print.
        out: the run file to write.
        epochs: epochs of training.
    """
    console.rule("[bold]graddoctor demo: exploding regression (unscaled targets)")
    console.print(
        "1000 x 10 regression data with noise 0.1 (targets std ~180), MLP 10-15-1 with ReLU, "
        "SGD lr 0.01, MSE, batches of 32: the targets are not standardised."
    )
    result = run_exploding_regression(out, epochs=epochs, progress=training_progress(console))
    for epoch, loss in enumerate(result.epoch_losses, 1):
        console.print(f"epoch {epoch}: mean loss {loss:.6g}")
    shown = result.first_nonfinite_step + 2 if result.first_nonfinite_step is not None else 12
    console.print("first losses: " + ", ".join(f"{v:.3g}" for v in result.losses[:shown]))
    console.print(layer_table(*_rows_at(out, 0), title="step 0: gradients are already large"))
    if result.first_bad_gradient_step is not None:
        bad = result.first_bad_gradient_step
        if bad > 0:
            console.print(
                layer_table(
                    *_rows_at(out, bad - 1), title=f"step {bad - 1}: the last finite gradients"
                )
            )
        console.print(layer_table(*_rows_at(out, bad), title=f"step {bad}: the gradients overflow"))
    for finding in result.live:
        console.print(f"[bold]live, while training:[/] {escape(finding)}")
    if result.first_nonfinite_step is not None:
        console.print(
            f"[bold red]the loss became non-finite at step {result.first_nonfinite_step}[/] "
            f"(gradients first at step {result.first_bad_gradient_step})"
        )
    console.print(f"run file: {out}  (graddoctor show {out} --step N)")
    console.rule("[bold]diagnosis")
    console.print(run_diagnose(out))


def scenarios_overview(console: Console, out: Path, name: str | None) -> None:
    """Run every built-in scenario (or ``name``) and print one table row per scenario.

    Args:
        console: where to print.
        out: the folder of the HTML report and runs.
        name: one scenario, or None for all.
    """
    console.rule("[bold]scenarios: diagnosis, literature check, remedies compared")
    start = time.perf_counter()
    plan = CorePlan.for_idle_cores()
    pages = (
        "a second process draws the report pages"
        if plan.background_pages
        else "pages drawn in turn"
    )
    console.print(f"idle cores: torch on {plan.threads} thread(s), {pages}")
    with torch_threads(plan.threads), console.status("working") as status:

        def show(message: str) -> None:
            status.update(f"{message}  [dim]{time.perf_counter() - start:.0f} s[/]")

        outcomes = run_scenarios(
            out,
            [name] if name else None,
            progress=show,
            threads=plan.threads,
            background_pages=plan.background_pages,
        )
        keras_line = None
        if name is None:  # the lecture's Keras MLP, when Keras is installed (else a one-line note)
            show("the lecture's MLP in Keras")
            keras_line = keras_demo_line(out)
    table = Table(header_style="bold")
    for header in ("scenario", "baseline diagnosis", "variants", "as reported", "best remedy", "s"):
        table.add_column(header)
    for o in outcomes:
        variants = "; ".join(
            f"{label}: {', '.join(k) or 'healthy'}"
            for label, k in o.found.items()
            if label != "baseline"
        )
        table.add_row(
            o.name,
            ", ".join(o.kinds) or "healthy",
            variants or "-",
            "[green]yes[/]" if o.as_expected else "[yellow]differs[/]",
            o.best_trial or "-",
            f"{o.seconds:.0f}",
        )
    console.print(table)
    if keras_line is not None:
        console.print(keras_line)
    console.print(f"report: {out / 'index.html'}  ({time.perf_counter() - start:.0f} s)")


def _rows_at(out: Path, step: int):
    found, rows = layer_rows(out, step)
    return rows, found
