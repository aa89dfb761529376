"""Remedies for vanishing and exploding gradients, behind one protocol (see ``registry``).

``get_remedy(id).apply(problem)`` returns a new ``Problem`` with the remedy applied and
never changes ``problem``; ``available()`` lists the ids, ``chain`` composes remedies.
The remedy functions themselves live in the family modules (``init``, ``clip``,
``activations``, ``normalization``, ``lr``, ``targets``, ``recurrent``, ``leaky``,
``omega``, ``echo_state``).
"""

from graddoctor.remedies.registry import REMEDY_IDS, Remedy, available, chain, get_remedy

__all__ = ["REMEDY_IDS", "Remedy", "available", "chain", "get_remedy"]
