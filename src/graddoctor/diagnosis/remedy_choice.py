"""Which remedies to try for a finding: the remedy registry's candidates, fitted to the run.

Each remedy declares beside its code (:mod:`graddoctor.remedies`) what it treats and
which runs it suits; this module only reads those declarations, and names no remedy:

* ``Remedy.treats``: finding kinds (:data:`~graddoctor.diagnosis.findings.KINDS`), each
  optionally restricted to one axis (:data:`~graddoctor.diagnosis.findings.AXES`) as
  ``"kind@axis"``: ``"exploding_gradients@time"`` treats exploding gradients over the time
  steps of a recurrent layer, not over depth or training steps.
* ``Remedy.suits``: facts about the run (:data:`FACTS`), one of which must hold for the
  remedy to be offered; empty for a remedy that suits every run. He initialisation suits
  ``"non_saturating"`` (models with rectifier-like activations), swapping activations
  ``"saturating"``, standardising the targets ``"huge_loss"``.

:func:`graddoctor.remedies.registry.remedies_for` lists a kind's candidates in order of
preference; :func:`choose_remedies` keeps, in that order, those that treat the finding's
axis and suit the run.
"""

from __future__ import annotations

import numpy as np

from .._modules import FAMILIES, NON_SATURATING, RECURRENT, SATURATING
from ..remedies.registry import remedies_for
from ..views import RunView
from . import thresholds as T
from .findings import Finding

# the model has no activation module and no recurrent layer: a deep linear network
# (Saxe, McClelland & Ganguli 2014)
LINEAR = "linear"
# the first loss is above thresholds.HUGE_LOSS: unscaled regression targets (seed 004)
HUGE_LOSS = "huge_loss"
# what ``Remedy.suits`` may name: a family some module of the model belongs to, or a fact
# about the whole run
FACTS = (*FAMILIES, LINEAR, HUGE_LOSS)


def run_facts(view: RunView) -> frozenset[str]:
    """The facts of :data:`FACTS` that hold for a recorded run."""
    facts = {family for family in FAMILIES if view.has_family(family)}
    if not facts & {SATURATING, NON_SATURATING, RECURRENT}:
        facts.add(LINEAR)
    _, losses = view.run.scalars("loss")
    finite = losses[np.isfinite(losses)]
    if finite.size and finite[0] > T.HUGE_LOSS:
        facts.add(HUGE_LOSS)
    return frozenset(facts)


def treats(entries: tuple[str, ...], kind: str, axis: str | None) -> bool:
    """Whether ``treats`` entries cover a finding of ``kind`` along ``axis`` (None: no axis)."""
    return kind in entries or (axis is not None and f"{kind}@{axis}" in entries)


def choose_remedies(finding: Finding, facts: frozenset[str]) -> list[str]:
    """Remedy ids for one finding, most preferred first.

    Args:
        finding: the finding (its kind and ``evidence["axis"]`` choose the candidates).
        facts: :func:`run_facts` of the run.

    Returns:
        the ids of the remedies the registry lists for the finding's kind that treat its
        axis and suit the run, in the registry's order of preference.
    """
    axis = finding.evidence.get("axis")
    return [
        remedy.id
        for remedy in remedies_for(finding.kind)
        if treats(remedy.treats, finding.kind, axis)
        and (not remedy.suits or facts & set(remedy.suits))
    ]
