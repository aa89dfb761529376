"""Which remedies to try for a finding, ordered by what the evidence says.

The ids are stable strings implemented by ``graddoctor.remedies``.
"""

from __future__ import annotations

from .findings import Finding

REMEDY_IDS = (
    "init_he", "init_glorot", "init_lecun", "init_orthogonal", "init_lsuv", "swap_activation", "batchnorm",
    "clip_value", "clip_norm", "clip_backward", "clip_adaptive", "clip_quantile", "lower_lr",
    "standardize_target", "tbptt", "recurrent_penalty", "vanishing_regularizer", "leaky_units", "lstm", "gru",
    "echo_state",
)


def _init_for(context: dict) -> str:
    if context.get("relu"):
        return "init_he"
    if context.get("selu"):
        return "init_lecun"
    return "init_glorot"


def choose_remedies(finding: Finding, context: dict) -> list[str]:
    """Ordered remedy ids for one finding, given model context (activations, recurrence, loss scale)."""
    kind, axis = finding.kind, finding.evidence.get("axis")
    huge = context.get("huge_loss", False)
    recurrent = context.get("recurrent", False)
    if kind == "nonfinite":
        if huge:
            return ["standardize_target", "clip_norm", "lower_lr"]
        direction = (finding.source or {}).get("direction")
        base = ["lower_lr", "clip_norm", "clip_value"]
        if recurrent:
            base = ["clip_norm", "clip_backward", "lower_lr", "init_orthogonal"]
        if direction in ("forward", "backward") and context.get("exploding"):
            return ["clip_norm", "lower_lr", "clip_value"]
        return base
    if kind == "exploding_gradients":
        if axis == "time":
            return ["clip_norm", "clip_backward", "init_orthogonal", "recurrent_penalty", "tbptt", "lstm", "gru"]
        if axis == "depth":
            return [_init_for(context), "batchnorm", "init_lsuv", "clip_norm"]
        if huge:
            return ["standardize_target", "clip_norm", "lower_lr", "clip_value"]
        return ["clip_norm", "lower_lr", "clip_adaptive", "clip_quantile"] + (["clip_backward"] if recurrent else [])
    if kind == "vanishing_gradients":
        if axis == "time":
            return ["lstm", "gru", "init_orthogonal", "leaky_units", "vanishing_regularizer", "echo_state"]
        if context.get("saturating"):
            return ["swap_activation", "batchnorm", "init_glorot", "init_lsuv"]
        if context.get("relu"):
            return ["init_he", "batchnorm", "init_lsuv"]
        return ["init_orthogonal", "init_lsuv", "batchnorm"]
    if kind == "vanishing_activations":
        if context.get("relu") or context.get("saturating"):
            return [_init_for(context), "batchnorm", "init_lsuv"]
        return ["init_orthogonal", "init_lsuv", "batchnorm"]
    if kind == "exploding_activations":
        return [_init_for(context) if (context.get("relu") or context.get("saturating")) else "init_orthogonal",
                "batchnorm", "init_lsuv", "lower_lr"]
    if kind == "saturated_activations":
        return ["swap_activation", "batchnorm", "init_glorot"]
    if kind == "amp_scale_collapse":  # fp16 overflow at any scale; bf16 advice is in the evidence
        return (["standardize_target"] if huge else []) + ["lower_lr", "clip_norm"]
    if kind == "dead_units":
        return ["swap_activation", "init_he", "lower_lr", "batchnorm"]
    return []
