r"""Composing remedies: ``chain("init_he", "clip_value")`` is one remedy applying both in order.

As optax's ``chain`` composes gradient transforms, a :class:`Chain` is itself a
:class:`~graddoctor.remedies.Remedy`: ``apply``, ``applicable`` and ``with_params`` work
the same, with one dict of parameters per component.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from graddoctor.remedies._remedy import Remedy
from graddoctor.remedies.registry import get_remedy

if TYPE_CHECKING:
    from graddoctor.problem import Problem


@dataclass(frozen=True)
class Chain(Remedy):
    """Remedies applied one after the other; ``params`` maps each component id to its params."""

    def _reason(self, problem: Problem) -> str | None:
        replacing = [c.id for c in self.components if c.replaces_step]
        if len(replacing) > 1:
            return f"{' and '.join(replacing)} each replace the training step (step_fn): chain only one"
        for component in self.components:
            reason = component._reason(problem)
            if reason is not None:
                return f"{component.id}: {reason}"
        return None

    def _resolve(self, overrides: Mapping[str, Any]) -> dict[str, Any]:
        super()._resolve(overrides)  # unknown component ids raise
        resolved = {}
        for component in self.components:
            wanted = overrides.get(component.id, {})
            if not isinstance(wanted, Mapping):
                raise TypeError(
                    f"chain {self.id!r}: override {component.id}= must be a dict of its parameters, "
                    f"e.g. {component.id}={dict(component.params)!r}; got {type(wanted).__name__}"
                )
            resolved[component.id] = component._resolve({**self.params[component.id], **wanted})
        return resolved

    def _apply_to_copy(self, working: Problem, params: dict[str, Any]) -> Problem:
        # the first component was checked against the original problem; each later one
        # is checked against what its predecessors produced
        previous = None
        for component in self.components:
            if previous is not None:
                reason = component._reason(working)
                if reason is not None:
                    raise ValueError(
                        f"remedy {component.id!r} does not apply to the problem that {previous!r} "
                        f"produced: {reason}"
                    )
            working = component._apply_to_copy(working, params[component.id])
            previous = component.id
        return working


def chain(*remedies: Remedy | str | list[Remedy | str] | tuple[Remedy | str, ...]) -> Chain:
    """One remedy applying ``remedies`` (objects or ids) in order; its id is ``"a+b+..."``.

    ``chain("init_he", "clip_value")`` and ``chain(["init_he", "clip_value"])`` are the
    same. Nested chains are flattened. Overrides and ``with_params`` take one dict per
    component: ``chain("lower_lr", "clip_value").apply(problem, clip_value={"value": 0.5})``.
    Each component records itself in ``notes["remedies"]``; tensor hooks are registered
    on the final model.

    Args:
        remedies: ``Remedy`` objects or registered ids, or one list of them.

    Returns:
        the :class:`Chain`.

    Raises:
        KeyError: an unknown id. ValueError: no remedy, or one given twice.
    """
    if len(remedies) == 1 and isinstance(remedies[0], (list, tuple)):
        remedies = tuple(remedies[0])
    flat: list[Remedy] = []
    for item in remedies:
        remedy = get_remedy(item)
        flat.extend(remedy.components or (remedy,))
    if not flat:
        raise ValueError("chain needs at least one remedy")
    ids = [remedy.id for remedy in flat]
    repeated = sorted({i for i in ids if ids.count(i) > 1})
    if repeated:
        raise ValueError(
            f"chain got {', '.join(repeated)} more than once: apply each remedy once, with the "
            "parameters you want (remedy.with_params(...))"
        )
    return Chain(
        id="+".join(ids),
        description="; then ".join(remedy.description for remedy in flat),
        params={remedy.id: dict(remedy.params) for remedy in flat},
        replaces_step=any(remedy.replaces_step for remedy in flat),
        components=tuple(flat),
    )
