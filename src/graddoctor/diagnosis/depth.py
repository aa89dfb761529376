"""Vanishing/exploding signal over depth: back-propagated gradients and activations.

The back-propagated signal of a layer is ``out_grad_norm``, the norm of dLoss/dOutput
(Glorot & Bengio 2010, fig. 7); the forward signal is ``act_std`` of each weight
layer's output (He et al. 2015, eq. 9; seed 003's deep linear network).
"""

from __future__ import annotations

import numpy as np

from ..views import RunView, owner_module
from . import thresholds as T
from ._common import geometric_fit, per_layer, persistent_steps, rounded, severity_for
from .findings import Finding


def _profiles(view: RunView, stat: str) -> tuple[list[str], list[np.ndarray]]:
    layers = view.weight_layers()
    modules = view.modules
    if stat not in modules.stats or len(layers) < T.MIN_LAYERS_FOR_DEPTH:
        return layers, []
    columns = [modules.names.index(n) for n in layers]
    return layers, [modules.stats[stat][i, columns] for i in range(len(modules.steps))]


def _ratio(profile: np.ndarray) -> float:
    """first / last over the layers that were measured (NaN when fewer than 3)."""
    measured = profile[np.isfinite(profile)]
    if measured.size < T.MIN_LAYERS_FOR_DEPTH or measured[-1] <= 0:
        return float("nan")
    return float(measured[0] / measured[-1])


def gradient_depth_findings(view: RunView, context: dict) -> list[Finding]:
    """``vanishing_gradients`` / ``exploding_gradients`` over depth."""
    layers, profiles = _profiles(view, "out_grad_norm")
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
        }
        evidence.update(_update_evidence(view, step, layers))
        evidence.update(context.get("zero_lr", {}))
        first, last = layers[0], layers[-1]
        direction = "vanish" if kind == "vanishing_gradients" else "explode"
        message = (
            f"Gradients {direction} towards the input: {first} receives {ratios[i]:.2g} of the "
            f"back-propagated signal {last} does ({abs(decades):.1f} decades over {len(layers)} layers)."
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
    """``vanishing_activations`` / ``exploding_activations``: forward scale over depth."""
    layers, profiles = _profiles(view, "act_std")
    if not profiles:
        return []
    # the forward signal: last hidden weight layer against the first one
    hidden = layers[:-1] if len(layers) > T.MIN_LAYERS_FOR_DEPTH else layers
    ratios = []
    for profile in profiles:
        values = profile[: len(hidden)]
        measured = values[np.isfinite(values)]
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
        slope, decades = geometric_fit(profiles[i][: len(hidden)])
        evidence = {
            "axis": "depth",
            "ratio_last_to_first": rounded(ratios[i]),
            "factor_per_layer": rounded(10**slope) if np.isfinite(slope) else float("nan"),
            "act_std": per_layer(hidden, profiles[i][: len(hidden)]),
            "step": step,
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
