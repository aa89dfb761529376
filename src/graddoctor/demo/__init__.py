"""The built-in demonstration runs behind ``graddoctor demo``.

``run_exploding_regression`` is the exploding regression of Godoy's "Deep Learning with
PyTorch Step-by-Step" (unscaled targets, SGD at lr 0.01), recorded until NaN; ``run_scenarios``
diagnoses every built-in scenario, checks its variants against what the literature
reports, compares its remedies and writes one HTML page per scenario plus an index.
Nothing here prints: ``graddoctor.cli._demo`` presents these runs.

Both take only the idle cores (:mod:`._cores`: torch's thread count from the load
average, restored afterwards), and with a second idle core the report pages are drawn
there while the next scenario trains (:mod:`._pages`).
"""

from __future__ import annotations

import math
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._findings import GradDoctorWarning
from ..monitor import Monitor
from ..problem import train_step
from ..scenarios.regression import exploding_regression
from ..store import open_run
from ._cores import CorePlan, torch_threads
from ._pages import PageWriter


@dataclass
class DemoResult:
    """Losses of the recorded run, where they stopped being finite, and the Monitor's live
    findings (``"<kind> at step <n>: <message>"``) as training ran."""

    run_path: str
    losses: list[float]
    epoch_losses: list[float]
    first_nonfinite_step: int | None
    first_bad_gradient_step: int | None
    live: list[str] = field(default_factory=list)


def run_exploding_regression(
    path: str | os.PathLike, *, epochs: int = 2, progress: Any = None, threads: int | None = None
) -> DemoResult:
    """Train the exploding regression (unscaled targets) for ``epochs`` epochs under a Monitor.

    Args:
        path: the run file to write (replaced if it exists).
        epochs: epochs of 32 batches each.
        progress: an optional ``rich.progress.Progress`` to advance.
        threads: torch threads (default 1: a 10-15-1 MLP gains nothing from more).
    """
    with torch_threads(threads or 1):
        return _run_exploding_regression(path, epochs, progress)


def _run_exploding_regression(path: str | os.PathLike, epochs: int, progress: Any) -> DemoResult:
    problem = exploding_regression()
    model = problem.model
    optimizer = problem.make_optimizer(model)
    per_epoch = len(problem.data)
    total = epochs * per_epoch
    losses: list[float] = []
    live: list[str] = []  # the live findings, shown by the caller rather than warned
    task = None
    if progress is not None:
        progress.start()
        task = progress.add_task("train", total=total, loss="")
    try:
        monitor = Monitor(
            model,
            optimizer,
            path=path,
            activations_every=1,
            overwrite=True,
            config={"scenario": problem.name, **problem.notes},
            on_finding=lambda f: live.append(f"{f.kind} at step {f.first_step}: {f.message}"),
        )
        with warnings.catch_warnings(), monitor as mon:
            warnings.simplefilter("ignore", GradDoctorWarning)
            for _, batch in zip(range(total), problem.batches()):
                loss = train_step(problem, model, optimizer, batch)
                mon.log(loss=loss)
                losses.append(float(loss))
                if task is not None:
                    progress.update(task, advance=1, loss=f"{losses[-1]:.3g}")
    finally:
        if progress is not None:
            progress.stop()
    epoch_losses = [
        sum(losses[i : i + per_epoch]) / len(losses[i : i + per_epoch])
        for i in range(0, total, per_epoch)
    ]
    first = next((i for i, v in enumerate(losses) if not math.isfinite(v)), None)
    with open_run(path) as run:
        steps, _, grad_norm = run.series("grad_norm")
    bad = [int(s) for s, row in zip(steps, grad_norm, strict=True) if not np.all(np.isfinite(row))]
    return DemoResult(str(path), losses, epoch_losses, first, bad[0] if bad else None, live)


@dataclass
class ScenarioOutcome:
    """What the demo found for one scenario."""

    name: str
    page: str
    healthy: bool
    kinds: list[str]
    expected: dict[str, list[str]]
    found: dict[str, list[str]]
    best_trial: str | None
    seconds: float = math.nan

    @property
    def as_expected(self) -> bool:
        """Every configuration diagnosed with at least the kinds the literature implies."""
        return all(
            set(kinds) <= set(self.found.get(label, [])) and (kinds or not self.found.get(label))
            for label, kinds in self.expected.items()
        )


def run_scenarios(
    out_dir: str | os.PathLike = "graddoctor-report",
    names: list[str] | None = None,
    *,
    max_remedies: int = 5,
    progress: Any = None,
    seed: int = 0,
    threads: int | None = None,
    background_pages: bool | None = None,
) -> list[ScenarioOutcome]:
    """Diagnose, treat and report every built-in scenario (or ``names``).

    Args:
        out_dir: where ``index.html``, one page per scenario and the run files go.
        names: scenario names (default: all of ``graddoctor.scenarios.available()``).
        max_remedies: remedies compared per scenario (the scenario's own list, in order).
        progress: called as ``progress(message)`` before each stage; the message starts
            with ``[i/n]``, the scenario's place.
        seed: the scenarios' seed.
        threads, background_pages: torch threads, and whether the pages are drawn in a
            second process; default from the idle cores (:class:`CorePlan`).
    """
    plan = CorePlan.for_idle_cores(threads, background_pages)
    with torch_threads(plan.threads), PageWriter(plan.background_pages) as pages:
        outcomes = _run_scenarios(Path(out_dir), names, max_remedies, progress, seed, pages)
        if progress is not None and pages.in_background:
            progress("drawing the last report pages")
    return outcomes


def _run_scenarios(
    out: Path,
    names: list[str] | None,
    max_remedies: int,
    progress: Any,
    seed: int,
    pages: PageWriter,
) -> list[ScenarioOutcome]:
    from ..checkup import checkup
    from ..experiment import compare
    from ..remedies import get_remedy
    from ..report.html import index_page
    from ..scenarios import available, get_scenario

    outcomes = []
    names = names or available()
    for index, name in enumerate(names, 1):
        start = time.perf_counter()
        scenario = get_scenario(name, seed=seed)
        folder = out / "runs" / name
        say = _stage_reporter(progress, f"[{index}/{len(names)}] {name}")
        say("checkup of the baseline")
        steps = scenario.steps
        baseline = checkup(scenario.baseline, steps=steps, run_path=folder / "baseline.gdr")
        found = {"baseline": baseline.kinds()}
        for label, problem in scenario.variants.items():
            say(f"checkup of {label}")
            found[label] = checkup(
                problem, steps=steps, run_path=folder / f"variant-{_slug(label)}.gdr"
            ).kinds()
        # remedies treat the sick configuration (for selu that is a variant: its baseline is healthy)
        sick = scenario.variants.get(scenario.notes.get("compare_on", ""), scenario.baseline)
        remedies = [r for r in scenario.remedies if get_remedy(r).applicable(sick)[0]][
            :max_remedies
        ]
        say(f"comparing {', '.join(remedies)}")
        comparison = compare(sick, remedies, steps=scenario.steps, out_dir=folder / "compare")
        page = out / f"{name}.html"
        intro = (
            f"{scenario.title}. {scenario.claim} Source: {scenario.source}. "
            + _expectation_text(scenario.expected_findings, found)
        )
        extra = _linear_theory_runs(folder, scenario.notes) if name == "deep-linear" else []
        say("report page queued" if pages.in_background else "writing the report page")
        pages.write(
            run_path=baseline.run_path,
            out=page,
            title=f"{name}: {scenario.title}",
            diagnosis=baseline,
            comparison=comparison,
            intro=intro,
            extra_figures=extra,
        )
        outcomes.append(
            ScenarioOutcome(
                name,
                page.name,
                baseline.healthy,
                baseline.kinds(),
                dict(scenario.expected_findings),
                found,
                comparison.best.name,
                time.perf_counter() - start,
            )
        )
    entries = [
        {
            "href": o.page,
            "title": o.name,
            "healthy": o.as_expected,
            "claim": get_scenario(o.name, seed=seed).claim,
            "summary": (
                "as the literature reports" if o.as_expected else "differs from the literature"
            )
            + (f" · best: {o.best_trial}" if o.best_trial else ""),
        }
        for o in outcomes
    ]
    index_page(entries, out / "index.html")
    return outcomes


def _linear_theory_runs(folder: Path, notes: dict) -> list[tuple[str, dict]]:
    """The deep linear scalar chain fed one input x with loss a_n, recorded once per w, for the
    measured-vs-closed-form figure (the figure reads w, b, x from each run's config)."""
    from ..theory import build_linear_chain

    n, b, x = int(notes.get("n", 30)), float(notes.get("b", 0.01)), 1.0
    figures = []
    for w in (0.5, 1.0, 1.5):
        model = build_linear_chain(n, w, b)
        path = folder / f"linear-theory-w{w}.gdr"
        with Monitor(
            model, path=path, overwrite=True, activations_every=1, config={"w": w, "b": b, "x": x}
        ) as mon:
            model(torch.full((1, 1), x, dtype=torch.float64)).sum().backward()
            mon.step()
        figures.append(("linear_theory", {"run": str(path)}))
    return figures


def _stage_reporter(progress: Any, where: str) -> Any:
    """``say(message)``: calls ``progress(f"{where}: {message}")`` (nothing without a progress)."""
    return (lambda message: progress(f"{where}: {message}")) if progress else (lambda message: None)


def _slug(label: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in label).strip("-")


def _expectation_text(expected: dict[str, list[str]], found: dict[str, list[str]]) -> str:
    parts = []
    for label, kinds in expected.items():
        got = found.get(label, [])
        parts.append(
            f"{label}: expected {', '.join(kinds) or 'healthy'}, found {', '.join(got) or 'healthy'}"
        )
    return "Diagnoses: " + "; ".join(parts) + "."


__all__ = [
    "CorePlan",
    "DemoResult",
    "ScenarioOutcome",
    "run_exploding_regression",
    "run_scenarios",
    "torch_threads",
]
