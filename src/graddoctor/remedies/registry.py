r"""Every graddoctor remedy by its stable id: the families' ``REMEDIES``, joined in one table.

>>> from graddoctor.remedies import get_remedy, chain
>>> fixed = chain("init_he", "clip_value").apply(problem)      # problem is left as it was
>>> fixed.notes["remedies"]
[{'id': 'init_he', 'params': {...}}, {'id': 'clip_value', 'params': {'value': 1.0}}]

Each family declares its remedies in :mod:`graddoctor.remedies._entries` (what each does
and its defaults are listed there), one module a family: ``init``, ``activations``,
``normalization``, ``clip``, ``lr``, ``targets`` and ``recurrent``. This module only joins
them, in that order, and looks them up: by id (:func:`get_remedy`) and by the finding they
treat (:func:`remedies_for`). Nothing here imports torch: the diagnosis reads the table
from a recorded run alone, and a remedy's code loads when it is first applied.

``seed`` makes random remedies reproducible without touching the global random state;
``seed=None`` draws from the global stream instead.
"""

from __future__ import annotations

import difflib

from graddoctor.remedies._entries import (
    activations,
    clip,
    init,
    lr,
    normalization,
    recurrent,
    targets,
)
from graddoctor.remedies._remedy import Remedy

__all__ = ["FAMILY_MODULES", "REMEDY_IDS", "SITUATIONS", "available", "get_remedy", "remedies_for"]

# the modules declaring REMEDIES, in registry order
FAMILY_MODULES = (init, activations, normalization, clip, lr, targets, recurrent)


def _join() -> dict[str, Remedy]:
    by_id: dict[str, Remedy] = {}
    for family in FAMILY_MODULES:
        for remedy in family.REMEDIES:
            if remedy.id in by_id:
                raise ValueError(
                    f"remedy id {remedy.id!r} is declared twice (again in {family.__name__})"
                )
            by_id[remedy.id] = remedy
    return by_id


_BY_ID = _join()

REMEDY_IDS: tuple[str, ...] = tuple(_BY_ID)

# every situation some remedy treats, sorted (so a kind and its refinements sit together)
SITUATIONS: tuple[str, ...] = tuple(
    sorted({s for remedy in _BY_ID.values() for s in remedy.treats})
)


def available() -> list[str]:
    """The ids of every registered remedy, in registry order (init, activation, ..., recurrent)."""
    return list(REMEDY_IDS)


def get_remedy(remedy_id: str | Remedy) -> Remedy:
    """The registered :class:`Remedy` with this id (a ``Remedy`` is returned as it is).

    Raises:
        KeyError: for an unknown id; the message suggests the closest ids and lists all.
    """
    if isinstance(remedy_id, Remedy):
        return remedy_id
    if not isinstance(remedy_id, str):
        raise TypeError(
            f"a remedy id is a string such as 'clip_norm', got {type(remedy_id).__name__}"
        )
    if remedy_id in _BY_ID:
        return _BY_ID[remedy_id]
    close = difflib.get_close_matches(remedy_id, REMEDY_IDS, n=3, cutoff=0.5)
    hint = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
    raise KeyError(f"unknown remedy id {remedy_id!r}: {hint}known ids: {', '.join(REMEDY_IDS)}")


def remedies_for(situation: str, activation: str | None = None) -> list[Remedy]:
    """The remedies treating ``situation``, most promising first (by ``Remedy.treats`` rank).

    A situation is a finding kind (``"exploding_gradients"``), or a kind refined by what
    else the run shows: ``_over_time`` / ``_over_depth`` (the axis the gradients change
    along), ``_from_huge_loss``, ``_in_recurrent`` (a recurrent model), ``_while_exploding``
    (gradients explode too), ``_with_saturating`` / ``_with_rectifier`` /
    ``_with_rectifier_or_saturating`` (the model's activations); :data:`SITUATIONS` lists
    them all. Remedies sharing a rank are alternatives: given ``activation`` (one of
    ``"rectifier"``, ``"selu"``, ``"saturating"``, ``"none"``), only those meant for it
    (``Remedy.activations``) are kept; a remedy alone at its rank is always kept. Equal
    ranks otherwise keep registry order.

    Args:
        situation: one of :data:`SITUATIONS`.
        activation: the model's activations, to choose between alternatives; ``None``
            keeps them all.

    Returns:
        the remedies, in the order to try them.

    Raises:
        KeyError: an unknown situation (the message suggests the closest).
    """
    if situation not in SITUATIONS:
        close = difflib.get_close_matches(situation, SITUATIONS, n=3, cutoff=0.5)
        hint = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
        raise KeyError(
            f"no remedy treats {situation!r}: {hint}known situations: {', '.join(SITUATIONS)}"
        )
    treating = [remedy for remedy in _BY_ID.values() if situation in remedy.treats]
    ranks: dict[int, list[Remedy]] = {}
    for remedy in sorted(treating, key=lambda r: r.treats[situation]):  # stable: registry order
        ranks.setdefault(remedy.treats[situation], []).append(remedy)
    chosen: list[Remedy] = []
    for alternatives in ranks.values():
        if activation is not None and len(alternatives) > 1:
            meant = [r for r in alternatives if activation in r.activations]
            alternatives = meant or alternatives
        chosen += alternatives
    return chosen
