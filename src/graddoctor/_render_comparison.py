"""Rich rendering of a Comparison (imported only when rich renders one).

Trial names, findings and errors may come from a ``comparison.json``: every string goes
through :func:`~graddoctor._render_text.inert_text` (no escapes, no markup).
"""

from __future__ import annotations

import math

from rich.table import Table
from rich.text import Text

from ._render_text import inert_text


def _num(value: float | None) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else "inf"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{value:.4g}"
    return str(value)


def render_comparison(comparison) -> Table:
    seeds = len(comparison.seeds)
    title = inert_text(
        f"{comparison.problem}: {comparison.steps} steps x {seeds} seed(s), "
        f"target loss {_num(comparison.target_loss)}"
    )
    table = Table(title=title, title_justify="left", header_style="bold")
    for header in (
        "rank",
        "trial",
        "final loss",
        "best loss",
        f"steps to {_num(comparison.target_loss)}",
        "diverged",
        "diagnosis",
        "time s",
    ):
        table.add_column(
            inert_text(header), justify="left" if header in ("trial", "diagnosis") else "right"
        )
    for rank, trial in enumerate(comparison.ranked(), 1):
        spread = f" ± {_num(trial.final_loss_spread)}" if seeds > 1 and trial.error is None else ""
        name = inert_text(trial.name, style="bold" if trial.name == "baseline" else "")
        if trial.error:
            table.add_row(str(rank), name, inert_text(trial.error, style="dim"), "", "", "", "", "")
            continue
        style = "red" if trial.diverged else ("green" if rank == 1 else "")
        table.add_row(
            str(rank),
            name,
            inert_text(_num(trial.final_loss) + spread, style=style),
            inert_text(_num(trial.best_loss)),
            inert_text(_num(trial.steps_to_target)),
            inert_text(f"at step {trial.diverged_at}", style="red") if trial.diverged else "no",
            Text("healthy", style="green")
            if trial.healthy
            else inert_text(", ".join(map(str, trial.findings)), style="yellow"),
            inert_text(
                _num(trial.wall_time)
                if isinstance(trial.wall_time, bool)
                or not isinstance(trial.wall_time, (int, float))
                else f"{trial.wall_time:.1f}"
            ),
        )
    return table
