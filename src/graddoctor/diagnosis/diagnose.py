"""``diagnose(run)``: every detector over a recorded run."""

from __future__ import annotations

import os

import numpy as np

from ..store import Run, open_run
from . import thresholds as T
from ._profile import RECURRENT_TYPES, RELU_TYPES, SATURATING_TYPES, RunView, load_view
from .amp import amp_findings, skipping_transient_amp_steps
from .depth import activation_depth_findings, gradient_depth_findings
from .findings import Diagnosis, Finding
from .nonfinite import nonfinite_findings
from .remedy_choice import choose_remedies
from .steps import step_findings
from .time_axis import time_findings
from .units import dead_unit_findings, saturation_findings

# Steps GradScaler skipped are hidden from every detector while they are transient
# (see diagnosis.amp); a persistent collapse is amp_findings' own finding.
DETECTORS = tuple(
    skipping_transient_amp_steps(detector)
    for detector in (
        nonfinite_findings,
        step_findings,
        gradient_depth_findings,
        time_findings,
        activation_depth_findings,
        saturation_findings,
        dead_unit_findings,
    )
) + (amp_findings,)


def model_context(view: RunView) -> dict:
    """Facts about the model and run that decide which remedies fit."""
    types = set(view.types.values())
    context = {
        "saturating": bool(types & SATURATING_TYPES),
        "relu": bool(types & (RELU_TYPES | {"LeakyReLU", "PReLU", "ELU", "GELU", "SiLU"})),
        "selu": "SELU" in types,
        "recurrent": bool(types & RECURRENT_TYPES),
    }
    _, losses = view.run.scalars("loss")
    finite = losses[np.isfinite(losses)]
    context["huge_loss"] = bool(finite.size and finite[0] > T.HUGE_LOSS)
    context["zero_lr"] = _zero_lr_evidence(view.run)
    context["spectra"] = {s["module"]: {"largest_singular_value": s["largest_singular_value"],
                                        "spectral_radius": s["spectral_radius"]}
                          for s in view.run.meta.get("recurrent_spectra", [])}
    return context


def _zero_lr_evidence(run: Run) -> dict:
    """Seed 003's control: the loss trained vs the loss at learning rate 0 on the same batches."""
    _, trained = run.scalars("loss")
    _, control = run.scalars("control/loss")
    n = min(len(trained), len(control))
    if n < 2 or not np.all(np.isfinite(trained[:n])):
        return {}
    tail = max(1, n // 4)
    trained_tail, control_tail = float(np.mean(trained[n - tail : n])), float(np.mean(control[n - tail : n]))
    gain = (control_tail - trained_tail) / abs(control_tail) if control_tail else 0.0
    return {"loss_trained": round(trained_tail, 6), "loss_zero_lr": round(control_tail, 6),
            "gain_over_zero_lr": round(gain, 4), "trains": bool(gain > T.ZERO_LR_MIN_GAIN)}


def findings_of(view: RunView, context: dict) -> list[Finding]:
    findings: list[Finding] = []
    for detector in DETECTORS:
        findings += detector(view, context)
    findings = _fold_consequences(findings)
    context["exploding"] = any(f.kind == "exploding_gradients" for f in findings)
    for finding in findings:
        finding.remedies = choose_remedies(finding, context)
    return findings


def _fold_consequences(findings: list[Finding]) -> list[Finding]:
    """A layer whose units are all dead passes exactly zero signal: the zero gradients and
    activations below it are its consequence, not separate vanishing problems."""
    dead = [f for f in findings if f.kind == "dead_units" and f.evidence.get("worst", 0) >= 1.0]
    if not dead:
        return findings
    kept = []
    for f in findings:
        zero = f.evidence.get("axis") == "depth" and (
            f.evidence.get("ratio_first_to_last") == 0.0 or f.evidence.get("ratio_last_to_first") == 0.0)
        if zero and f.kind in ("vanishing_gradients", "vanishing_activations"):
            dead[0].evidence.setdefault("consequences", []).append(f"{f.kind}: exactly zero below the dead layer")
            continue
        kept.append(f)
    return kept


def diagnose(run: str | os.PathLike | Run) -> Diagnosis:
    """Run every detector over a recorded run (a path or an ``open_run`` result).

    Returns:
        a ``Diagnosis`` whose findings name the problem, the layers and the evidence.
    """
    opened = not isinstance(run, Run)
    run = open_run(run)
    try:
        view = load_view(run)
        context = model_context(view)
        findings = findings_of(view, context)
        steps = run.steps()
        return Diagnosis(findings, run_path=str(run.path), model=view.model_type,
                         steps=int(steps[-1]) + 1 if steps.size else 0,
                         extra={"zero_lr": context["zero_lr"]} if context["zero_lr"] else {})
    finally:
        if opened:
            run.close()
