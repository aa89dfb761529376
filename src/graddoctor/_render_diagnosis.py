"""Rich rendering of a Diagnosis (imported only when rich renders one)."""

from __future__ import annotations

from rich.console import Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from ._numbers import format_number

STYLE = {"critical": "bold red", "warning": "yellow", "info": "cyan"}


def _evidence_text(evidence: dict) -> str:
    parts = []
    for key, value in evidence.items():
        if isinstance(value, dict):
            items = list(value.items())
            shown = ", ".join(f"{k}={format_number(v)}" if isinstance(v, float) else f"{k}={v}" for k, v in items[:6])
            parts.append(f"{key}: {shown}{' ...' if len(items) > 6 else ''}")
        elif isinstance(value, list):
            continue
        elif isinstance(value, float):
            parts.append(f"{key}={format_number(value, 4)}")
        else:
            parts.append(f"{key}={value}")
    return "\n".join(parts)


def render_diagnosis(diagnosis) -> Panel:
    title = {"findings": "problems found", "insufficient_data": "insufficient data"}.get(diagnosis.status, "healthy")
    header = Text(diagnosis.summary, style="green" if diagnosis.healthy else "bold")
    table = Table(show_header=True, header_style="bold", expand=True)
    table.add_column("severity", no_wrap=True)
    table.add_column("finding", ratio=4)
    table.add_column("evidence", ratio=3)
    table.add_column("try", no_wrap=True, min_width=18)
    for f in diagnosis.findings:
        label = Text(f.kind, style=STYLE[f.severity])
        body = Text(f.message)
        if f.source:
            body.append(f"\nsource: {f.source.get('module') or '(model)'} ({f.source.get('direction')}, "
                        f"step {f.source.get('step')})", style="bold")
        table.add_row(Text(f.severity, style=STYLE[f.severity]), Group(label, body), _evidence_text(f.evidence),
                      "\n".join(f.remedies[:4]))
    parts = [header] + ([table] if diagnosis.findings else [])
    if diagnosis.run_path:
        parts.append(Text(f"run: {diagnosis.run_path}", style="dim"))
    return Panel(Group(*parts), title=f"graddoctor diagnosis: {title}", border_style="green" if diagnosis.healthy else "red")
