"""Which remedies to try for a finding: the remedy registry's candidates for its situation.

Each remedy declares in its registry entry (:mod:`graddoctor.remedies`) the situations it
treats, with a rank (``Remedy.treats``), and the activations it suits; this module names
no remedy. It only turns a finding and the facts of the run into a *situation*, a finding
kind refined by what else the run shows (the axis, a huge loss, a recurrent model, the
model's activations; see :func:`graddoctor.remedies.registry.remedies_for`), and asks
the registry.
"""

from __future__ import annotations

import numpy as np

from .._modules import FAMILIES, NON_SATURATING, RECTIFIER, RECURRENT, SATURATING, SELF_NORMALIZING
from ..remedies.registry import SITUATIONS, remedies_for
from ..views import RunView
from . import thresholds as T
from .findings import Finding

# the first loss is above thresholds.HUGE_LOSS: unscaled regression targets (LeCun et al.
# 1998, "Efficient BackProp": standardise the targets)
HUGE_LOSS = "huge_loss"
# some other finding says the gradients explode
EXPLODING = "exploding"
# a non-saturating activation other than SELU (ReLU, leaky and smooth variants): He init
HE_ACTIVATION = "he_activation"
FACTS = (*FAMILIES, HUGE_LOSS, EXPLODING, HE_ACTIVATION)


def run_facts(view: RunView) -> frozenset[str]:
    """The facts of :data:`FACTS` that hold for a recorded run (all but ``exploding``)."""
    facts = {family for family in FAMILIES if view.has_family(family)}
    if any(
        NON_SATURATING in found and SELF_NORMALIZING not in found
        for found in view.families.values()
    ):
        facts.add(HE_ACTIVATION)
    _, losses = view.scalars("loss")
    finite = losses[np.isfinite(losses)]
    if finite.size and finite[0] > T.HUGE_LOSS:
        facts.add(HUGE_LOSS)
    return frozenset(facts)


def activation_of(facts: frozenset[str]) -> str:
    """The model's activations as the registry's ``Remedy.activations`` names them."""
    if RECTIFIER in facts or HE_ACTIVATION in facts:
        return "rectifier"
    if SELF_NORMALIZING in facts:
        return "selu"
    return "saturating" if SATURATING in facts else "none"


def situation_of(finding: Finding, facts: frozenset[str]) -> str:
    """The registry situation of a finding: its kind, refined by axis and run facts."""
    kind, axis = finding.kind, finding.evidence.get("axis")
    huge, recurrent = HUGE_LOSS in facts, RECURRENT in facts
    activation = activation_of(facts)
    refinements: list[str] = []
    if kind == "nonfinite":
        source = finding.source or {}
        direction = source.get("direction")
        if direction == "input" or source.get("what") == "targets":
            return f"{kind}_from_data"  # no change to the model or its training treats bad data
        if huge:
            refinements.append("from_huge_loss")
        elif direction in ("forward", "backward") and EXPLODING in facts:
            refinements.append("while_exploding")
        elif recurrent:
            refinements.append("in_recurrent")
    elif kind == "exploding_gradients":
        if finding.evidence.get("clipped"):
            refinements.append("under_clipping")  # the clip is on: what is left is the step size
        elif axis in ("time", "depth"):
            refinements.append(f"over_{axis}")
        elif huge:
            refinements.append("from_huge_loss")
        elif recurrent:
            refinements.append("in_recurrent")
    elif kind == "vanishing_gradients":
        if axis == "time":
            refinements.append("over_time")
        elif activation in ("saturating", "rectifier"):
            refinements.append(f"with_{activation}")
    elif kind in ("vanishing_activations", "exploding_activations"):
        if activation in ("saturating", "rectifier", "selu"):
            refinements.append("with_rectifier_or_saturating")
    elif kind == "amp_scale_collapse" and huge:
        refinements.append("from_huge_loss")
    for refinement in refinements:
        refined = f"{kind}_{refinement}"
        if refined in SITUATIONS:
            return refined
    return kind


def choose_remedies(finding: Finding, facts: frozenset[str]) -> list[str]:
    """Remedy ids for one finding, most preferred first (none for a situation no remedy treats).

    Args:
        finding: the finding (its kind, ``evidence["axis"]`` and source choose the situation).
        facts: :func:`run_facts` of the run, plus ``"exploding"`` when gradients explode.

    Returns:
        the ids the registry lists for the finding's situation, for the model's activations.
    """
    situation = situation_of(finding, facts)
    if situation not in SITUATIONS:
        return []
    return [remedy.id for remedy in remedies_for(situation, activation_of(facts))]
