"""The HTML report: one self-contained page (figures inline, no network, no script).

Every value that comes from a model, a file or a user (module names, run metadata, trial
names, every field of ``comparison.json``, messages) is escaped, so a module named
``<script>`` is shown, never run.
"""

from __future__ import annotations

import html
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..diagnosis import Diagnosis, diagnose
from ..store import open_run
from ..views import RunView, load_view
from .figures import FIGURES, figure_to_data_uri

CSS = """
:root { --ink:#1d2430; --muted:#5b6577; --line:#e3e7ee; --bg:#f6f8fb; --card:#fff;
        --crit:#c0392b; --warn:#b7791f; --ok:#2f855a; --accent:#2b6cb0; }
* { box-sizing: border-box; }
body { margin:0; font:15px/1.5 -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
       color:var(--ink); background:var(--bg); }
header { background:#16202e; color:#fff; padding:22px 40px; }
header h1 { margin:0; font-size:24px; font-weight:600; }
header p { margin:4px 0 0; color:#b8c3d4; }
main { max-width:1180px; margin:0 auto; padding:24px 40px 60px; }
section { background:var(--card); border:1px solid var(--line); border-radius:10px; padding:20px 24px; margin:0 0 22px; }
h2 { margin:0 0 12px; font-size:19px; }
h3 { margin:16px 0 6px; font-size:16px; }
.verdict { font-size:17px; font-weight:600; padding:10px 14px; border-radius:8px; margin-bottom:14px; }
.verdict.ok { background:#e6f4ea; color:var(--ok); } .verdict.bad { background:#fdecea; color:var(--crit); }
.finding { border-left:5px solid var(--warn); padding:10px 14px; margin:12px 0; background:#fffaf0; border-radius:0 8px 8px 0; }
.finding.critical { border-color:var(--crit); background:#fdf1f0; } .finding.info { border-color:var(--accent); background:#f0f6fc; }
.kind { font-weight:700; font-family:ui-monospace, "DejaVu Sans Mono", monospace; }
.sev { display:inline-block; font-size:12px; text-transform:uppercase; letter-spacing:.04em; padding:1px 8px; border-radius:10px; margin-left:8px; color:#fff; background:var(--warn); }
.critical .sev { background:var(--crit); } .info .sev { background:var(--accent); }
.remedies code { background:#eef2f7; padding:1px 6px; border-radius:4px; margin-right:4px; }
details { margin-top:6px; } summary { cursor:pointer; color:var(--muted); }
table { border-collapse:collapse; width:100%; font-size:14px; }
th, td { text-align:left; padding:6px 10px; border-bottom:1px solid var(--line); vertical-align:top; }
th { background:#f0f3f8; font-weight:600; } td.num { text-align:right; font-variant-numeric:tabular-nums; }
tr.best td { background:#eef8f1; } tr.diverged td { color:var(--crit); }
.figures { display:grid; grid-template-columns:repeat(auto-fit, minmax(480px, 1fr)); gap:18px; }
figure { margin:0; } figure img { width:100%; height:auto; border:1px solid var(--line); border-radius:6px; background:#fff; }
figcaption { color:var(--muted); font-size:13px; margin-top:4px; }
.meta td:first-child { color:var(--muted); width:220px; }
nav a { display:block; padding:10px 14px; margin:8px 0; border:1px solid var(--line); border-radius:8px; background:#fff;
        color:var(--accent); text-decoration:none; } nav a:hover { background:#f0f6fc; }
nav .tag { float:right; font-size:13px; } .tag.ok { color:var(--ok); } .tag.bad { color:var(--crit); }
"""


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _num(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, str):
        return esc(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "−inf"
        return f"{value:.4g}"
    return esc(value)


def _count(value: Any) -> str:
    """``1,234`` for an integer; anything else a file holds, as text."""
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value)


def page(title: str, subtitle: str, body: str) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{CSS}</style></head><body>"
        f"<header><h1>{esc(title)}</h1><p>{esc(subtitle)}</p></header><main>{body}</main></body></html>\n"
    )


def findings_section(diagnosis: Diagnosis | dict, heading: str = "Diagnosis") -> str:
    data = diagnosis.to_dict() if isinstance(diagnosis, Diagnosis) else diagnosis
    healthy = data["healthy"]
    parts = [
        f"<section><h2>{esc(heading)}</h2>",
        f'<div class="verdict {"ok" if healthy else "bad"}">{esc(data["summary"])}</div>',
    ]
    for f in data["findings"]:
        remedies = "".join(f"<code>{esc(r)}</code>" for r in f["remedies"])
        source = ""
        if f.get("source"):
            s = f["source"]
            source = (
                f"<p><b>Source:</b> <code>{esc(s.get('module') or '(model)')}</code>, "
                f"{esc(s.get('direction'))} pass, step {esc(s.get('step'))}</p>"
            )
        evidence = "".join(
            f"<tr><td>{esc(k)}</td><td>{esc(json.dumps(v) if isinstance(v, (dict, list)) else _num(v))}</td></tr>"
            for k, v in f["evidence"].items()
        )
        layers = ", ".join(f"<code>{esc(n)}</code>" for n in f["layers"][:6])
        parts.append(
            f'<div class="finding {esc(f["severity"])}"><span class="kind">{esc(f["kind"])}</span>'
            f'<span class="sev">{esc(f["severity"])}</span>'
            f"<p>{esc(f['message'])}</p>{source}"
            f"<p>Layers: {layers or '–'} · first step {_num(f['first_step'])}</p>"
            f'<p class="remedies"><b>Try:</b> {remedies or "–"}</p>'
            f"<details><summary>evidence</summary><table>{evidence}</table></details></div>"
        )
    parts.append("</section>")
    return "".join(parts)


def figure_html(kind: str, target: Any, **options: Any) -> str:
    """One figure as an inline <img>, or an empty string when it cannot be drawn."""
    try:
        axes = FIGURES[kind](target, **options)
    except (ValueError, KeyError, TypeError):
        return ""
    uri = figure_to_data_uri(axes)
    return (
        f'<figure><img alt="{esc(kind)}" src="{uri}">'
        f"<figcaption>{esc(FIGURES[kind].caption)}</figcaption></figure>"
    )


def figures_section(view: RunView, heading: str = "Figures") -> str:
    """Every figure of :data:`~graddoctor.report.figures.FIGURES` whose ``needs`` the run meets."""
    items = [figure_html(kind, view) for kind, figure in FIGURES.items() if figure.needs(view)]
    return f'<section><h2>{esc(heading)}</h2><div class="figures">{"".join(items)}</div></section>'


def metadata_section(view: RunView) -> str:
    meta = view.run.meta
    model = meta.get("model", {})
    steps = view.steps
    rows = {
        "run file": str(view.path),
        "model": f"{model.get('type')} ({_count(model.get('param_count', 0))} parameters, "
        f"{_count(model.get('trainable_count', 0))} trainable)",
        "optimizer": meta.get("optimizer"),
        "steps recorded": int(steps[-1]) + 1 if steps.size else 0,
        "graddoctor / torch": f"{meta.get('graddoctor_version')} / {meta.get('torch_version')}",
        "started": meta.get("start_time"),
        "config": json.dumps(meta.get("config", {})),
    }
    body = "".join(f"<tr><td>{esc(k)}</td><td>{esc(v)}</td></tr>" for k, v in rows.items())
    return f'<section><h2>Run</h2><table class="meta">{body}</table></section>'


def comparison_section(comparison: Any) -> str:
    data = comparison.to_dict() if hasattr(comparison, "to_dict") else comparison
    by_name = {t["name"]: t for t in data["trials"]}
    head = (
        "<tr><th>rank</th><th>trial</th><th>final loss</th><th>best loss</th>"
        f"<th>steps to {_num(data['target_loss'])}</th><th>diverged</th><th>diagnosis</th><th>time s</th></tr>"
    )
    rows = []
    for rank, name in enumerate(data["ranking"], 1):
        t = by_name[name]
        cls = "best" if rank == 1 else ("diverged" if t["diverged"] else "")
        if t.get("error"):
            rows.append(
                f'<tr><td class="num">{rank}</td><td>{esc(name)}</td><td colspan="6">{esc(t["error"])}</td></tr>'
            )
            continue
        spread = f" ± {_num(t['final_loss_spread'])}" if len(data["seeds"]) > 1 else ""
        diagnosis = "healthy" if t["healthy"] else ", ".join(t["findings"])
        rows.append(
            f'<tr class="{cls}"><td class="num">{rank}</td><td>{esc(name)}</td>'
            f'<td class="num">{_num(t["final_loss"])}{esc(spread)}</td><td class="num">{_num(t["best_loss"])}</td>'
            f'<td class="num">{_num(t["steps_to_target"])}</td>'
            f"<td>{'at step ' + esc(t['diverged_at']) if t['diverged'] else 'no'}</td>"
            f'<td>{esc(diagnosis)}</td><td class="num">{_num(t["wall_time"])}</td></tr>'
        )
    runs = {
        name: by_name[name]["run_paths"][0]
        for name in data["ranking"]
        if by_name[name]["run_paths"]
    }
    loss_figure = figure_html("loss", runs) if runs else ""
    flows = "".join(
        f'<figure><img alt="gradient flow of {esc(n)}" src="{_flow_uri(p)}"><figcaption>{esc(n)}: gradient flow'
        f"</figcaption></figure>"
        for n, p in list(runs.items())[:6]
    )
    return (
        f"<section><h2>Remedies compared on {esc(data['problem'])}</h2>"
        f"<p>{esc(data['steps'])} steps, seed(s) {esc(', '.join(map(str, data['seeds'])))}; "
        "same initial weights and batch order for every trial.</p>"
        f'<table>{head}{"".join(rows)}</table><div class="figures">{loss_figure}</div>'
        f'<h3>Gradient flow per trial</h3><div class="figures">{flows}</div></section>'
    )


def _flow_uri(run_path: str) -> str:
    return figure_to_data_uri(FIGURES["gradient_flow"](run_path))


def run_report(
    run_path: str | os.PathLike,
    out: str | os.PathLike,
    *,
    title: str | None = None,
    diagnosis: Diagnosis | None = None,
    comparison: Any = None,
    intro: str = "",
    extra_figures: Sequence[tuple[str, dict]] = (),
) -> Path:
    """Write the report of one run (and optionally a comparison) to ``out``.

    The run file is opened once; its diagnosis and figures read the same view.

    Args:
        run_path: the recorded run.
        out: the HTML file to write.
        title: page title (default: the run file's name).
        diagnosis: reuse a diagnosis (default: ``diagnose(run_path)``).
        comparison: a ``Comparison`` (or its dict) to add as a ranked table with figures.
        intro: a paragraph of plain text shown first (escaped).
        extra_figures: ``(kind, options)`` pairs drawn in addition, on this run or on
            ``options["run"]`` when given.
    """
    sections = []
    if intro:
        sections.append(f"<section><p>{esc(intro)}</p></section>")
    with open_run(run_path) as run:
        view = load_view(run)
        sections.append(findings_section(diagnosis if diagnosis is not None else diagnose(view)))
        if comparison is not None:
            sections.append(comparison_section(comparison))
        sections.append(figures_section(view))
        if extra_figures:
            items = []
            for kind, options in extra_figures:
                options = dict(options)
                items.append(figure_html(kind, options.pop("run", view), **options))
            items = "".join(items)
            sections.append(f'<section><h2>Theory</h2><div class="figures">{items}</div></section>')
        sections.append(metadata_section(view))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    name = title or Path(run_path).name
    out.write_text(page(name, "graddoctor report", "".join(sections)), encoding="utf-8")
    return out


def comparison_report(comparison_json: str | os.PathLike, out: str | os.PathLike) -> Path:
    """Report of a saved comparison: ranked trials, then the baseline's diagnosis and figures.

    Raises:
        ValueError: the file is not a comparison (see ``Comparison.load``), or has no
            baseline trial with a run file.
    """
    from ..experiment import BASELINE, Comparison  # torch: a run's report does without it

    comparison = Comparison.load(comparison_json)
    baseline = next((t for t in comparison.trials if t.name == BASELINE), None)
    if baseline is None or not baseline.run_paths:
        what = "no trial 'baseline'" if baseline is None else "the baseline has no run file"
        raise ValueError(f"{comparison_json}: {what}")
    return run_report(
        baseline.run_paths[0],
        out,
        title=f"{comparison.problem}: remedies compared",
        comparison=comparison,
    )


def index_page(
    entries: Sequence[dict], out: str | os.PathLike, title: str = "graddoctor demo"
) -> Path:
    """A page linking scenario pages: entries of {"href", "title", "claim", "healthy", "summary"}."""
    links = "".join(
        f'<a href="{esc(e["href"])}"><span class="tag {"ok" if e.get("healthy") else "bad"}">'
        f"{esc(e.get('summary', ''))}</span><b>{esc(e['title'])}</b><br><small>{esc(e.get('claim', ''))}</small></a>"
        for e in entries
    )
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    body = f"<section><h2>Scenarios</h2><nav>{links}</nav></section>"
    out.write_text(
        page(title, "built-in reproducible problems, diagnosed and treated", body), encoding="utf-8"
    )
    return out
