"""Rich renderings for the command line (imported by the CLI only, never by the library).

Layer names and types come from a run file: they are shown inert (no escape sequences,
no markup), see :mod:`graddoctor._render_text`.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from rich.text import Text

from .._numbers import format_number
from .._render_text import inert_text
from ._table import LineTable

if TYPE_CHECKING:  # the views import torch's statistics; the command line starts without them
    from ..views import LayerRow

BAR_WIDTH = 12
HEADERS = (
    "layer",
    "type",
    "grad norm",
    "log10 grad norm",
    "weight norm",
    "update/weight",
    "act mean",
    "act std",
    "saturated",
    "dead",
    "dL/d out",
)


def _fmt(value: float, kind: str = "g") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if kind == "pct":
        return f"{100 * value:.0f}%"
    if kind == "int":
        return f"{value:.0f}"
    return format_number(value)


def log_bar(value: float, lo: float, hi: float) -> Text:
    """A bar whose length is log10(value) placed between log10(lo) and log10(hi)."""
    if value is None or math.isnan(value):
        return Text("")
    if math.isinf(value):
        return Text("█" * BAR_WIDTH + " inf", style="bold red")
    if value <= 0:
        return Text("· 0", style="dim")
    exponent = math.log10(value)
    span = max(hi - lo, 1e-12)
    filled = max(1, round(BAR_WIDTH * (exponent - lo) / span)) if hi > lo else BAR_WIDTH // 2
    style = "red" if exponent > 2 else ("yellow" if exponent < -4 else "green")
    return Text("█" * filled + " " * (BAR_WIDTH - filled) + f" 1e{exponent:+.0f}", style=style)


def layer_table(rows: list[LayerRow], step: int | None, title: str = "") -> LineTable:
    """The per-layer table of ``graddoctor show`` (one line a layer, also for thousands of layers)."""
    table = LineTable(
        HEADERS,
        right=[h for h in HEADERS if h not in ("layer", "type", "log10 grad norm")],
        title=inert_text(title or f"step {step}"),
        shrink_first=("layer", "type"),
    )
    exponents = [
        math.log10(r.grad_norm)
        for r in rows
        if r.grad_norm and math.isfinite(r.grad_norm) and r.grad_norm > 0
    ]
    lo, hi = (min(exponents), max(exponents)) if exponents else (0.0, 1.0)
    lo = min(lo, hi - 1)
    for row in rows:
        nonfinite_grad = (row.grad_nonfinite or 0) > 0
        nonfinite = nonfinite_grad or (row.act_nonfinite or 0) > 0
        table.add_row(
            inert_text(row.name or "(model)", style="bold red" if nonfinite else ""),
            inert_text(row.type),
            "nan" if nonfinite_grad and math.isnan(row.grad_norm) else _fmt(row.grad_norm),
            Text("nan", style="bold red")
            if nonfinite_grad and math.isnan(row.grad_norm)
            else log_bar(row.grad_norm, lo, hi),
            _fmt(row.weight_norm),
            _fmt(row.update_ratio),
            _fmt(row.act_mean),
            _fmt(row.act_std),
            _fmt(row.act_saturated, "pct"),
            _fmt(row.act_dead, "pct"),
            _fmt(row.out_grad_norm),
        )
    return table


def make_console():
    """A console at least 120 columns wide when output is not a terminal (logs, CI)."""
    from rich.console import Console

    console = Console()
    return console if console.is_terminal else Console(width=max(console.width, 130))
