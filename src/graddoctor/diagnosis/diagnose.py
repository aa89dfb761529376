"""``diagnose(run)``: every detector over a recorded run."""

from __future__ import annotations

import os

import numpy as np

from ..monitor._guard_events import guard_events
from ..remedies.frameworks import framework_note
from ..store import Run, open_run
from ..views import RunView, load_view
from . import thresholds as T
from .amp import amp_findings, skipping_transient_amp_steps
from .clipping import clipping_findings
from .depth import activation_depth_findings, gradient_depth_findings
from .evidence import evidence_gaps
from .findings import Diagnosis, Finding
from .loss import loss_findings
from .nonfinite import nonfinite_findings
from .remedy_choice import EXPLODING, choose_remedies, run_facts
from .steps import step_findings
from .time_axis import time_findings
from .units import dead_unit_findings, saturation_findings

# Steps GradScaler skipped are hidden from every detector while they are transient
# (see diagnosis.amp); a persistent collapse is amp_findings' own finding.
DETECTORS = tuple(
    skipping_transient_amp_steps(detector)
    for detector in (
        nonfinite_findings,
        loss_findings,
        step_findings,
        clipping_findings,
        gradient_depth_findings,
        time_findings,
        activation_depth_findings,
        saturation_findings,
        dead_unit_findings,
    )
) + (amp_findings,)


def model_context(view: RunView) -> dict:
    """What the detectors and remedy choice read besides the statistics.

    Returns:
        ``{"facts": run_facts(view), "zero_lr": {...}, "spectra": {module: {...}}}``.
    """
    spectra = {
        s["module"]: {
            "largest_singular_value": s["largest_singular_value"],
            "spectral_radius": s["spectral_radius"],
        }
        for s in view.run.meta.get("recurrent_spectra", [])
    }
    return {"facts": run_facts(view), "zero_lr": _zero_lr_evidence(view), "spectra": spectra}


def zero_lr_window(steps: int) -> int:
    """How many of the last of ``steps`` trained steps the zero-learning-rate control is
    compared on: the last quarter, at least one."""
    return max(1, steps // 4)


def _zero_lr_evidence(view: RunView) -> dict:
    """The zero-learning-rate control: the loss trained vs the loss at learning rate 0 on the same batches."""
    trained_steps, trained = view.scalars("loss")
    control_steps, control = view.scalars("control/loss")
    n = len(trained)
    if n < 2 or not control.size or not np.all(np.isfinite(trained)):
        return {}
    compared = np.isin(control_steps, trained_steps[n - zero_lr_window(n) :])
    if not compared.any():
        return {}
    trained_tail = float(np.mean(trained[np.isin(trained_steps, control_steps[compared])]))
    control_tail = float(np.mean(control[compared]))
    gain = (control_tail - trained_tail) / abs(control_tail) if control_tail else 0.0
    return {
        "loss_trained": round(trained_tail, 6),
        "loss_zero_lr": round(control_tail, 6),
        "gain_over_zero_lr": round(gain, 4),
        "trains": bool(gain > T.ZERO_LR_MIN_GAIN),
    }


def findings_of(view: RunView, context: dict) -> list[Finding]:
    """Every detector's findings, consequences folded into their cause, remedies chosen."""
    findings: list[Finding] = []
    for detector in DETECTORS:
        findings += detector(view, context)
    findings = _fold_consequences(findings)
    facts = context["facts"]
    if any(f.kind == "exploding_gradients" for f in findings):
        facts = facts | {EXPLODING}
    framework = (view.run.meta.get("config") or {}).get("framework")
    for finding in findings:
        finding.remedies = choose_remedies(finding, facts)
        finding.message += framework_note(finding.remedies, framework)  # e.g. Keras' settings
    return findings


def _fold_consequences(findings: list[Finding]) -> list[Finding]:
    """Fold findings that are another finding's consequence into its evidence.

    A layer whose units are all dead passes exactly zero signal: the zero gradients and
    activations below it are its consequence. A depth profile that first goes wrong after
    the loss began to diverge was made by the huge updates, not by the architecture.
    """
    kept = []
    dead = [f for f in findings if f.kind == "dead_units" and f.evidence.get("worst", 0) >= 1.0]
    diverging = [f for f in findings if f.kind == "diverging_loss" and f.first_step is not None]
    for f in findings:
        depth = f.evidence.get("axis") == "depth"
        zero = depth and (
            f.evidence.get("ratio_first_to_last") == 0.0
            or f.evidence.get("ratio_last_to_first") == 0.0
        )
        if dead and zero and f.kind in ("vanishing_gradients", "vanishing_activations"):
            dead[0].evidence.setdefault("consequences", []).append(
                f"{f.kind}: exactly zero below the dead layer"
            )
            continue
        if (
            diverging
            and depth
            and f.first_step is not None
            and f.first_step > diverging[0].first_step
        ):
            diverging[0].evidence.setdefault("consequences", []).append(
                f"{f.kind} over depth from step {f.first_step} ({' vs '.join(f.layers)})"
            )
            continue
        kept.append(f)
    return kept


def diagnose(run: str | os.PathLike | Run | RunView) -> Diagnosis:
    """Run every detector over a recorded run (a path, an ``open_run`` result or its view).

    Returns:
        a ``Diagnosis`` whose findings name the problem, the layers and the evidence.
    """
    if isinstance(run, (Run, RunView)):
        return _diagnose_view(load_view(run))
    with open_run(run) as opened:
        return _diagnose_view(load_view(opened))


def _diagnose_view(view: RunView) -> Diagnosis:
    context = model_context(view)
    findings = findings_of(view, context)
    steps = view.steps
    insufficient, limits = evidence_gaps(view)
    extra = {"zero_lr": context["zero_lr"]} if context["zero_lr"] else {}
    interventions = guard_events(view.run)
    if interventions:  # what the training Guard did while the run was recorded
        counts = {
            e["kind"]: sum(x["kind"] == e["kind"] for x in interventions) for e in interventions
        }
        extra["guard"] = {"counts": counts, "events": interventions[:20]}
    return Diagnosis(
        findings,
        run_path=str(view.path),
        model=view.model_type,
        steps=int(steps[-1]) + 1 if steps.size else 0,
        extra=extra,
        insufficient=insufficient,
        limits=limits,
    )
