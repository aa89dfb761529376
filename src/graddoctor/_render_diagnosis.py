"""Rich rendering of a Diagnosis (imported only when rich renders one).

Everything shown comes from a run file (module names, messages naming them), so every
string goes through :func:`~graddoctor._render_text.inert_text`: no escape sequence
reaches the terminal and no ``[`` is read as rich markup.
"""

from __future__ import annotations

from rich.console import Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from ._numbers import format_number
from ._render_text import inert_text

STYLE = {"critical": "bold red", "warning": "yellow", "info": "cyan"}


def _evidence_text(evidence: dict) -> Text:
    parts = []
    for key, value in evidence.items():
        if isinstance(value, dict):
            items = list(value.items())
            shown = ", ".join(
                f"{k}={format_number(v)}" if isinstance(v, float) else f"{k}={v}"
                for k, v in items[:6]
            )
            parts.append(f"{key}: {shown}{' ...' if len(items) > 6 else ''}")
        elif isinstance(value, list):
            continue
        elif isinstance(value, float):
            parts.append(f"{key}={format_number(value, 4)}")
        else:
            parts.append(f"{key}={value}")
    return Text("\n").join(inert_text(part) for part in parts)


def render_diagnosis(diagnosis) -> Panel:
    titles = {"findings": "problems found", "insufficient_data": "insufficient data"}
    title = titles.get(diagnosis.status, "healthy")
    header = inert_text(
        diagnosis.summary, style="green" if diagnosis.healthy else "bold", newlines=True
    )
    table = Table(show_header=True, header_style="bold", expand=True)
    table.add_column("severity", no_wrap=True)
    table.add_column("finding", ratio=4)
    table.add_column("evidence", ratio=3)
    table.add_column("try", no_wrap=True, min_width=18)
    for f in diagnosis.findings:
        style = STYLE.get(f.severity, "")
        body = inert_text(f.message, newlines=True)
        if f.source:
            body.append_text(
                inert_text(
                    f"\nsource: {f.source.get('module') or '(model)'} ({f.source.get('direction')}, "
                    f"step {f.source.get('step')})",
                    style="bold",
                    newlines=True,
                )
            )
        table.add_row(
            inert_text(f.severity, style=style),
            Group(inert_text(f.kind, style=style), body),
            _evidence_text(f.evidence),
            Text("\n").join(inert_text(r) for r in f.remedies[:4]),
        )
    parts = [header] + ([table] if diagnosis.findings else [])
    if diagnosis.run_path:
        parts.append(inert_text(f"run: {diagnosis.run_path}", style="dim"))
    return Panel(
        Group(*parts),
        title=f"graddoctor diagnosis: {title}",
        border_style="green" if diagnosis.healthy else "red",
    )
