"""Rich rendering of a Comparison (imported only when rich renders one)."""

from __future__ import annotations

import math

from rich.table import Table
from rich.text import Text


def _num(value: float | None) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else "inf"
    return f"{value:.4g}"


def render_comparison(comparison) -> Table:
    seeds = len(comparison.seeds)
    table = Table(title=f"{comparison.problem}: {comparison.steps} steps x {seeds} seed(s), "
                  f"target loss {_num(comparison.target_loss)}", title_justify="left", header_style="bold")
    for header in ("rank", "trial", "final loss", "best loss", f"steps to {_num(comparison.target_loss)}",
                   "diverged", "diagnosis", "time s"):
        table.add_column(header, justify="left" if header in ("trial", "diagnosis") else "right")
    for rank, trial in enumerate(comparison.ranked(), 1):
        spread = f" ± {_num(trial.final_loss_spread)}" if seeds > 1 and trial.error is None else ""
        if trial.error:
            table.add_row(str(rank), trial.name, Text(trial.error, style="dim"), "", "", "", "", "")
            continue
        style = "red" if trial.diverged else ("green" if rank == 1 else "")
        table.add_row(
            str(rank),
            Text(trial.name, style="bold" if trial.name == "baseline" else ""),
            Text(_num(trial.final_loss) + spread, style=style),
            _num(trial.best_loss),
            _num(trial.steps_to_target),
            Text(f"at step {trial.diverged_at}", style="red") if trial.diverged else "no",
            Text("healthy", style="green") if trial.healthy else Text(", ".join(trial.findings), style="yellow"),
            f"{trial.wall_time:.1f}",
        )
    return table
