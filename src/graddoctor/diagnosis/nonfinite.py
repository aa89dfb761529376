"""``nonfinite``: NaN/Inf in the data, the loss, activations, gradients or weights, and where it began.

A run whose failing step was replayed (``checkup``, ``graddoctor run``) carries a
``nonfinite_source`` event from ``locate_nonfinite``: the source is then *localised*,
down to the input batch or the targets when the data held the NaN/Inf. A failed replay
leaves a ``nonfinite_locate_failed`` event. Without a replay the source is *inferred*
from the records, and said to be: the loss, when it went non-finite while every recorded
module output was finite; else the first module in execution order with a non-finite
output (forward); else the module closest to the output whose gradients are non-finite
(backward).
"""

from __future__ import annotations

import numpy as np

from .._signals import nan_measured
from ..views import RunView, owner_module
from .findings import Finding


def _first(steps: np.ndarray, bad: np.ndarray) -> int | None:
    index = np.nonzero(bad)[0]
    return int(steps[index[0]]) if index.size else None


def _first_steps(view: RunView) -> dict[str, int | None]:
    loss_steps, losses = (
        view.scalars("loss") if view.has_scalar("loss") else (np.zeros(0), np.zeros(0))
    )
    firsts: dict[str, int | None] = {"loss": _first(loss_steps, ~np.isfinite(losses))}
    params, modules = view.params, view.modules
    if params.stats:
        counts = params.stats["grad_nonfinite"]
        firsts["gradients"] = _first(params.steps, np.nansum(counts, axis=1) > 0)
        firsts["weights"] = _first(params.steps, nan_measured(params.stats["weight_norm"]))
    if "act_nonfinite" in modules.stats:
        firsts["activations"] = _first(
            modules.steps, np.nansum(modules.stats["act_nonfinite"], axis=1) > 0
        )
    return firsts


def nonfinite_findings(view: RunView, context: dict) -> list[Finding]:
    """``nonfinite``: the first step with NaN/Inf anywhere, where it began, and how that is known."""
    firsts = _first_steps(view)
    seen = {k: v for k, v in firsts.items() if v is not None}
    if not seen:
        return []
    first_step = min(seen.values())
    evidence: dict = {f"first_nonfinite_{k}": v for k, v in seen.items()}
    located = view.run.events("nonfinite_source")
    failed = view.run.events("nonfinite_locate_failed")
    if located:
        source = _source_from_event(located[0])
        evidence["localised_by"] = "replay of the failing step (locate_nonfinite)"
        evidence["events"] = located[0].get("events", [])[:5]
        message = f"NaN/Inf first appeared at step {source['step']}, in {_where(source)}."
    else:
        source = _infer_source(view, seen)
        why = (
            f"the replay of step {failed[0].get('step')} failed: {failed[0].get('error')}"
            if failed
            else "no replay of the failing step was recorded"
        )
        evidence["not_localised"] = why
        message = f"NaN/Inf first appeared at step {first_step}. Not localised ({why})"
        if source is None:
            message += "; it showed first in the " + ", ".join(sorted(seen, key=seen.get)) + "."
        else:
            message += f"; inferred from the records: in {_where(source)}."
    message += _aftermath(source, seen)
    layers = [source["module"]] if source and source.get("module") else []
    return [Finding("nonfinite", "critical", layers, first_step, evidence, message, source=source)]


def _where(source: dict) -> str:
    """Where the NaN/Inf began, in words."""
    direction, module = source["direction"], source.get("module") or "(model)"
    counts = f"{source.get('nan_count', 0)} NaN and {source.get('inf_count', 0)} Inf values"
    if direction == "input":
        return f"the input batch ({counts} at step {source['step']}): the data is the cause, not the model"
    if direction == "loss" and source.get("what") == "targets":
        return f"the targets of the batch ({counts} at step {source['step']}): the data is the cause, not the model"
    if direction == "loss":
        return (
            "the loss function"
            if source.get("localised")
            else "the loss (every recorded module output was finite)"
        )
    if direction == "parameter":
        return f"a parameter of {module}"
    if source.get("first_module") and not source.get("localised"):
        return f"the forward pass of {module} (or the input batch it was given: inputs are not recorded)"
    return f"the {direction} pass of {module}"


def _aftermath(source: dict | None, seen: dict[str, int]) -> str:
    silent = seen.get("loss") is None or seen.get("gradients", 1 << 60) < seen.get("loss", 1 << 60)
    if source is not None and source["direction"] == "backward" and silent:
        return " The forward pass and loss stayed finite: only the gradients (and then the weights) broke."
    return ""


def _source_from_event(event: dict) -> dict:
    direction = event.get("direction", "forward")
    if direction == "forward" and not event.get("module") and event.get("what") == "input":
        direction = "input"
    return {
        "module": event.get("module", ""),
        "direction": direction,
        "step": int(event.get("step", 0)),
        "what": event.get("what"),
        "module_type": event.get("module_type"),
        "nan_count": event.get("nan_count"),
        "inf_count": event.get("inf_count"),
        "localised": True,
    }


def _inferred(module: str, direction: str, step: int) -> dict:
    return {
        "module": module,
        "direction": direction,
        "step": step,
        "localised": False,
        "inferred": True,
    }


def _infer_source(view: RunView, seen: dict[str, int]) -> dict | None:
    step = min(seen.values())
    params, modules = view.params, view.modules
    activations = seen.get("activations")
    if activations is not None and activations <= step:
        i = int(np.nonzero(modules.steps == activations)[0][0])
        row = modules.stats["act_nonfinite"][i]
        bad = [n for n, v in zip(modules.names, row, strict=True) if np.isfinite(v) and v > 0]
        if bad:
            source = _inferred(view.ordered(bad)[0], "forward", activations)
            if source["module"] == view.ordered(list(modules.names))[0]:
                source["first_module"] = True
            return source
    loss = seen.get("loss")
    if loss is not None and loss <= step and (activations is None or activations > loss):
        return _inferred("", "loss", loss)
    if "gradients" in seen:
        i = int(np.nonzero(params.steps == seen["gradients"])[0][0])
        row = params.stats["grad_nonfinite"][i]
        owners = [
            owner_module(n)
            for n, v in zip(params.names, row, strict=True)
            if np.isfinite(v) and v > 0
        ]
        if owners:
            return _inferred(view.ordered(owners)[-1], "backward", seen["gradients"])
    return None
