"""Remedies for vanishing and exploding gradients, behind one protocol (see ``registry``).

``get_remedy(id).apply(problem)`` returns a new ``Problem`` with the remedy applied and
never changes ``problem``; ``available()`` lists the ids, ``chain`` composes remedies,
``remedies_for(situation)`` ranks those treating a finding. The remedies live in their
families: ``init/``, ``activations``, ``normalization``, ``clip/``, ``lr`` (and
``lr_range``), ``targets`` and ``recurrent/`` (Elman, leaky and echo-state layers, TBPTT,
Omega, gating); each family's registered entries are declared without torch in
``_entries/`` (one module a family), naming the code they apply. Importing this package,
the registry or ``frameworks`` imports no torch: a family's code loads when one of its
remedies is first applied.
"""

from graddoctor.remedies._remedy import Remedy
from graddoctor.remedies.chain import Chain, chain
from graddoctor.remedies.registry import REMEDY_IDS, SITUATIONS, available, get_remedy, remedies_for

__all__ = [
    "REMEDY_IDS",
    "SITUATIONS",
    "Chain",
    "Remedy",
    "available",
    "chain",
    "get_remedy",
    "remedies_for",
]
