"""``nonfinite``: NaN/Inf in the loss, activations, gradients or weights, and where it began.

A run replayed by ``checkup`` carries an exact ``nonfinite_source`` event from
``locate_nonfinite``; for any other run the source is inferred from the records: the
first module in execution order with a non-finite output (forward), else the module
closest to the output whose gradients are non-finite (backward).
"""

from __future__ import annotations

import numpy as np

from ..views import RunView, owner_module
from .findings import Finding


def _first(steps: np.ndarray, bad: np.ndarray) -> int | None:
    index = np.nonzero(bad)[0]
    return int(steps[index[0]]) if index.size else None


def nonfinite_findings(view: RunView, context: dict) -> list[Finding]:
    run = view.run
    loss_steps, losses = run.scalars("loss")
    firsts = {"loss": _first(loss_steps, ~np.isfinite(losses))}
    params, modules = view.params, view.modules
    if params.stats:
        counts = params.stats["grad_nonfinite"]
        firsts["gradients"] = _first(params.steps, np.nansum(counts, axis=1) > 0)
        weights = params.stats["weight_norm"]
        # a NaN norm is a NaN weight; an infinite norm may be the overflow of huge finite
        # weights (exploding, not yet non-finite), so only NaN counts here
        firsts["weights"] = _first(params.steps, _nan_measured(weights))
    if "act_nonfinite" in modules.stats:
        firsts["activations"] = _first(
            modules.steps, np.nansum(modules.stats["act_nonfinite"], axis=1) > 0
        )
    seen = {k: v for k, v in firsts.items() if v is not None}
    if not seen:
        return []
    first_step = min(seen.values())
    events = run.events("nonfinite_source")
    source = _source_from_event(events[0]) if events else _infer_source(view, seen)
    evidence = {f"first_nonfinite_{k}": v for k, v in seen.items()}
    if events:
        evidence["localised_by"] = "replay of the failing step (locate_nonfinite)"
        evidence["events"] = events[0].get("events", [])[:5]
    if source is None:
        what = ", ".join(sorted(seen, key=seen.get))
    elif source["direction"] == "loss":
        what = "the loss function"
    elif source["direction"] == "parameter":
        what = f"a parameter of {source['module'] or '(model)'}"
    else:
        what = f"{source['direction']} pass of {source['module'] or '(model)'}"
    silent = seen.get("loss") is None or (
        "gradients" in seen and seen["gradients"] < seen.get("loss", 1 << 60)
    )
    message = f"NaN/Inf first appeared at step {first_step}, in the {what}."
    if source is not None and source["direction"] == "backward" and silent:
        message += " The forward pass and loss stayed finite: only the gradients (and then the weights) broke."
    layers = [source["module"]] if source and source.get("module") else []
    return [Finding("nonfinite", "critical", layers, first_step, evidence, message, source=source)]


def _nan_measured(weights: np.ndarray) -> np.ndarray:
    """A NaN weight norm after an update is a NaN weight (weights are always measured)."""
    return np.any(np.isnan(weights), axis=1) & ~np.all(np.isnan(weights), axis=1)


def _source_from_event(event: dict) -> dict:
    return {
        "module": event.get("module", ""),
        "direction": event.get("direction", "forward"),
        "step": int(event.get("step", 0)),
        "what": event.get("what"),
        "module_type": event.get("module_type"),
    }


def _infer_source(view: RunView, seen: dict[str, int]) -> dict | None:
    step = min(seen.values())
    params, modules = view.params, view.modules
    if "activations" in seen and seen["activations"] <= step and "act_nonfinite" in modules.stats:
        i = int(np.nonzero(modules.steps == seen["activations"])[0][0])
        row = modules.stats["act_nonfinite"][i]
        bad = [n for n, v in zip(modules.names, row, strict=True) if np.isfinite(v) and v > 0]
        if bad:
            return {
                "module": view.ordered(bad)[0],
                "direction": "forward",
                "step": seen["activations"],
            }
    if "gradients" in seen:
        i = int(np.nonzero(params.steps == seen["gradients"])[0][0])
        row = params.stats["grad_nonfinite"][i]
        owners = [
            owner_module(n)
            for n, v in zip(params.names, row, strict=True)
            if np.isfinite(v) and v > 0
        ]
        if owners:
            return {
                "module": view.ordered(owners)[-1],
                "direction": "backward",
                "step": seen["gradients"],
            }
    return None
