"""Vanishing/exploding signal over depth: back-propagated gradients and activations.

The back-propagated signal of a layer is ``out_grad_norm``, the norm of dLoss/dOutput
(Glorot & Bengio 2010, fig. 7); the forward signal is ``act_std`` of each weight
layer's output (He et al. 2015, eq. 9; a deep linear network's :math:`w^n x`). Both are
compared along the path the signal takes (:mod:`graddoctor.diagnosis.signal_path`): one
exit layer per block of a residual network, no attention query or key projection, and
forward scales only between like signals.
"""

from __future__ import annotations

import numpy as np

from ..views import RunView, owner_module
from . import thresholds as T
from ._common import geometric_fit, per_layer, persistent_steps, rounded, severity_for
from .findings import Finding
from .signal_path import forward_paths, is_grouped, signal_path


def _profiles(view: RunView, stat: str, layers: list[str]) -> list[np.ndarray]:
    """``stat`` of ``layers`` at every recorded module step (empty when too few layers)."""
    modules = view.modules
    if stat not in modules.stats or len(layers) < T.MIN_LAYERS_FOR_DEPTH:
        return []
    column = {name: j for j, name in enumerate(modules.names)}
    columns = [column[n] for n in layers]
    return [modules.stats[stat][i, columns] for i in range(len(modules.steps))]


def _path_evidence(weight_layers: list[str], path: list[str]) -> dict:
    if not is_grouped(weight_layers, path):
        return {"compared": "weight layers"}
    return {"compared": "block exits (residual stream), no query/key projections"}


def _ratio(profile: np.ndarray) -> float:
    """first / last over the layers that were measured (NaN when fewer than 3)."""
    measured = profile[np.isfinite(profile)]
    if measured.size < T.MIN_LAYERS_FOR_DEPTH or measured[-1] <= 0:
        return float("nan")
    return float(measured[0] / measured[-1])


def gradient_depth_findings(view: RunView, context: dict) -> list[Finding]:
    """``vanishing_gradients`` / ``exploding_gradients`` over depth, along the signal path."""
    weight_layers = view.weight_layers()
    layers = signal_path(weight_layers)
    profiles = _profiles(view, "out_grad_norm", layers)
    if not profiles:
        return []
    ratios = [_ratio(p) for p in profiles]
    findings = []
    for kind, holds in (
        ("vanishing_gradients", [r < T.VANISHING_DEPTH_RATIO for r in ratios]),
        ("exploding_gradients", [r > T.EXPLODING_DEPTH_RATIO for r in ratios]),
    ):
        step = persistent_steps(view.modules.steps, holds)
        if step is None:
            continue
        i = list(view.modules.steps).index(step)
        profile = profiles[i]
        slope, decades = geometric_fit(profile[np.isfinite(profile)])
        evidence = {
            "axis": "depth",
            "ratio_first_to_last": rounded(ratios[i]),
            "decades": rounded(abs(decades)),
            # per layer going down towards the input, the direction back-propagation runs
            "factor_per_layer": rounded(10**-slope) if np.isfinite(slope) else float("nan"),
            "out_grad_norm": per_layer(layers, profile),
            "step": step,
            **_path_evidence(weight_layers, layers),
        }
        evidence.update(_update_evidence(view, step, layers))
        evidence.update(context.get("zero_lr", {}))
        first, last = layers[0], layers[-1]
        direction = "vanish" if kind == "vanishing_gradients" else "explode"
        message = (
            f"Gradients {direction} towards the input: {first} receives {ratios[i]:.2g} of the "
            f"back-propagated signal {last} does ({abs(decades):.1f} decades over {len(layers)} layers "
            "along the signal path)."
        )
        findings.append(
            Finding(
                kind,
                severity_for(decades, T.CRITICAL_DEPTH_DECADES),
                [first, last],
                step,
                evidence,
                message,
            )
        )
    return findings


def _update_evidence(view: RunView, step: int, layers: list[str]) -> dict:
    """Update ratios of the lowest and highest layers' weights at (or after) ``step``."""
    ratios = view.params.stats.get("update_ratio")
    if ratios is None or not len(view.params.steps):
        return {}
    later = np.nonzero(view.params.steps >= step)[0]
    if not later.size:
        return {}
    row = ratios[later[0]]

    def layer_ratio(layer: str) -> float:
        values = [row[j] for j, n in enumerate(view.params.names) if owner_module(n) == layer]
        values = [v for v in values if np.isfinite(v)]
        return rounded(float(max(values))) if values else float("nan")

    return {
        "update_ratio_first": layer_ratio(layers[0]),
        "update_ratio_last": layer_ratio(layers[-1]),
    }


def activation_depth_findings(view: RunView, context: dict) -> list[Finding]:
    """``vanishing_activations`` / ``exploding_activations``: forward scale over depth, like with like."""
    weight_layers = view.weight_layers()
    findings: list[Finding] = []
    for hidden in forward_paths(view, weight_layers):
        found = {f.kind for f in findings}
        findings += [
            f for f in _forward_findings(view, hidden, weight_layers) if f.kind not in found
        ]
    return findings


def _forward_findings(view: RunView, hidden: list[str], weight_layers: list[str]) -> list[Finding]:
    profiles = _profiles(view, "act_std", hidden)
    if not profiles:
        return []
    ratios = []
    for profile in profiles:
        measured = profile[np.isfinite(profile)]
        ratios.append(
            float(measured[-1] / measured[0])
            if measured.size >= 2 and measured[0] > 0
            else float("nan")
        )
    findings = []
    for kind, holds in (
        ("vanishing_activations", [r < T.VANISHING_ACTIVATION_RATIO for r in ratios]),
        ("exploding_activations", [r > T.EXPLODING_ACTIVATION_RATIO for r in ratios]),
    ):
        step = persistent_steps(view.modules.steps, holds)
        if step is None:
            continue
        i = list(view.modules.steps).index(step)
        slope, decades = geometric_fit(profiles[i])
        evidence = {
            "axis": "depth",
            "ratio_last_to_first": rounded(ratios[i]),
            "factor_per_layer": rounded(10**slope) if np.isfinite(slope) else float("nan"),
            "act_std": per_layer(hidden, profiles[i]),
            "step": step,
            "compared": _compared(view, hidden, weight_layers),
        }
        word = "shrinks" if kind == "vanishing_activations" else "grows"
        message = (
            f"The forward signal {word} geometrically with depth: the output scale of {hidden[-1]} is "
            f"{ratios[i]:.2g} times that of {hidden[0]} ({abs(decades):.1f} decades)."
        )
        findings.append(
            Finding(
                kind,
                severity_for(decades, T.CRITICAL_DEPTH_DECADES),
                [hidden[0], hidden[-1]],
                step,
                evidence,
                message,
            )
        )
    return findings


def _compared(view: RunView, hidden: list[str], weight_layers: list[str]) -> str:
    if hidden and hidden[0] not in weight_layers:
        return f"outputs of the {view.types.get(hidden[0], 'saturating')} activations"
    return (
        _path_evidence(weight_layers, signal_path(weight_layers))["compared"]
        + " with unbounded inputs"
    )
