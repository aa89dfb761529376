r"""The one remedy protocol: a ``Remedy`` turns a ``Problem`` into a new one, never touching it.

Every remedy of :mod:`graddoctor.remedies.registry` is a :class:`Remedy`: a stable id, a
one-line description naming its paper, default parameters, a family, an applicability
check and a transform. ``apply`` always works on ``problem.copy()`` (a deep-copied model;
data and callables shared), and records what it did in ``notes["remedies"]``. ``chain``
composes remedies, as optax's ``chain`` composes gradient transforms.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from graddoctor.problem import Problem
from graddoctor.remedies._clip_backward import clip_during_backward

FAMILIES = ("init", "activation", "normalization", "clip", "lr", "target", "recurrent", "chain")

# (problem) -> None when the remedy applies, else one sentence saying why not and what to do
Check = Callable[[Problem], "str | None"]
# (working copy of the problem, resolved params) -> the new problem; may change the copy's model
Transform = Callable[[Problem, dict[str, Any]], Problem]

# notes keys written by the protocol and by remedies
REMEDIES_NOTE = "remedies"  # [{"id": ..., "params": {...}}, ...] in the order applied
BACKWARD_CLIP_NOTE = "backward_clip"  # the BackwardClipHandle owning clip_backward's hooks
STEP_REMEDY_NOTE = "step_fn_remedy"  # id of the remedy that set Problem.step_fn


@dataclass(frozen=True)
class Remedy:
    r"""A registered remedy: metadata plus ``apply(problem, **overrides) -> Problem``.

    Attributes:
        id: the stable string users grep for (``"clip_norm"``); ``"a+b"`` for a chain.
        description: one line naming the method and its paper.
        family: ``"init"``, ``"activation"``, ``"normalization"``, ``"clip"``, ``"lr"``,
            ``"target"``, ``"recurrent"`` (or ``"chain"``).
        params: the default parameters; ``apply``'s keyword overrides must be among them.
            A chain's params map each component id to that component's params.
        requires: what the problem must have, in words (``"any"``, ``"recurrent"``,
            ``"regression"``...); :meth:`applicable` checks it and says why not.
        transform: ``(working_copy, params) -> Problem``; internal, see ``registry``.
        check: ``(problem) -> reason or None``; internal.
        replaces_step: whether the remedy sets ``Problem.step_fn`` (at most one per problem).
        components: the remedies of a chain, in order (empty for a single remedy).
    """

    id: str
    description: str
    family: str
    params: dict[str, Any] = field(default_factory=dict, hash=False)
    requires: str = "any"
    transform: Transform | None = field(default=None, repr=False, compare=False)
    check: Check | None = field(default=None, repr=False, compare=False)
    replaces_step: bool = False
    components: tuple[Remedy, ...] = field(default=(), repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id:
            raise ValueError(f"a remedy id must be a non-empty string, got {self.id!r}")
        if self.family not in FAMILIES:
            raise ValueError(f"remedy {self.id!r}: family must be one of {FAMILIES}, got {self.family!r}")
        if not isinstance(self.description, str) or "\n" in self.description.strip():
            raise ValueError(f"remedy {self.id!r}: the description must be one line")
        if not isinstance(self.params, Mapping):
            raise TypeError(f"remedy {self.id!r}: params must be a mapping, got {type(self.params).__name__}")
        if self.transform is None and not self.components:
            raise ValueError(f"remedy {self.id!r} needs a transform (or components, for a chain)")
        object.__setattr__(self, "params", {name: value for name, value in self.params.items()})

    def applicable(self, problem: Problem) -> tuple[bool, str]:
        """Whether ``apply`` can run on ``problem``, and if not, why (empty reason when it can).

        A chain is checked component by component against ``problem`` itself; a later
        component that no longer applies to what its predecessors produced makes ``apply``
        raise (with the reason) instead.
        """
        _check_problem(problem)
        reason = self._reason(problem)
        return (reason is None, reason or "")

    def apply(self, problem: Problem, **overrides: Any) -> Problem:
        """A new Problem with the remedy applied; ``problem`` itself is never changed.

        Args:
            problem: the problem to remedy.
            **overrides: parameter values replacing the defaults in :attr:`params`
                (for a chain: ``component_id={"param": value}``).

        Returns:
            a Problem built on ``problem.copy()`` whose ``notes["remedies"]`` ends with
            ``{"id": ..., "params": {...}}`` for this remedy (one entry per chain component).

        Raises:
            TypeError: an unknown parameter name (the valid ones are listed).
            ValueError: the remedy does not apply (the reason says why).
        """
        _check_problem(problem)
        params = self._resolve(overrides)
        reason = self._reason(problem)
        if reason is not None:
            raise ValueError(f"remedy {self.id!r} does not apply to problem {problem.name!r}: {reason}")
        original_clip = problem.notes.get(BACKWARD_CLIP_NOTE)
        working = problem.copy()  # deep-copied model, new notes dict; data and callables shared
        result = self._apply_to_copy(working, params)
        return _rehook_backward_clip(result, original_clip)

    def with_params(self, **overrides: Any) -> Remedy:
        """The same remedy with other default parameters (unknown names raise ``TypeError``)."""
        return replace(self, params=self._resolve(overrides))

    def _reason(self, problem: Problem) -> str | None:
        if self.components:
            replacing = [c.id for c in self.components if c.replaces_step]
            if len(replacing) > 1:
                return f"{' and '.join(replacing)} each replace the training step (step_fn): chain only one"
            for component in self.components:
                reason = component._reason(problem)
                if reason is not None:
                    return f"{component.id}: {reason}"
            return None
        return self.check(problem) if self.check is not None else None

    def _resolve(self, overrides: Mapping[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(overrides) - set(self.params))
        if unknown:
            valid = ", ".join(sorted(self.params)) or "none"
            what = "component" if self.components else "parameter"
            raise TypeError(
                f"remedy {self.id!r} got unknown {what}(s) {', '.join(unknown)}; valid {what}s: {valid}"
            )
        if not self.components:
            return {**self.params, **overrides}
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
        # the first remedy was checked against the original problem; later chain
        # components are checked against what their predecessors produced
        if self.components:
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
        result = self.transform(working, dict(params))
        if not isinstance(result, Problem):
            raise TypeError(f"remedy {self.id!r} returned {type(result).__name__}, not a Problem")
        return _record(result, self.id, params)


def _check_problem(problem: Any) -> None:
    if not isinstance(problem, Problem):
        raise TypeError(
            f"remedies apply to a graddoctor Problem, got {type(problem).__name__}: build one with "
            "Problem(model, data, loss_fn, optimizer)"
        )


def _record(problem: Problem, remedy_id: str, params: Mapping[str, Any]) -> Problem:
    # a new list every time: copies share the notes' values, so nothing is appended in place
    notes = dict(problem.notes)
    notes[REMEDIES_NOTE] = [*notes.get(REMEDIES_NOTE, ()), {"id": remedy_id, "params": dict(params)}]
    return problem.replace(notes=notes)


def _rehook_backward_clip(problem: Problem, original: Any) -> Problem:
    """Put clip_backward's tensor hooks on the final model's parameters.

    ``copy.deepcopy`` does not copy tensor hooks, and later remedies may replace modules,
    so the hooks are registered once more on the model returned. A handle created while
    applying (hooks on the working copy) is removed first; the original problem's handle
    is left alone: its hooks belong to the original model.
    """
    handle = problem.notes.get(BACKWARD_CLIP_NOTE)
    if handle is None or (handle is original and not len(handle)):
        return problem  # none, or the original's hooks were removed on purpose
    if handle is not original:
        handle.remove()
    notes = dict(problem.notes)
    notes[BACKWARD_CLIP_NOTE] = clip_during_backward(problem.model.parameters(), handle.value)
    return problem.replace(notes=notes)


def chain(*remedies: Remedy) -> Remedy:
    """One remedy applying ``remedies`` in order; its id is ``"a+b+..."``.

    Nested chains are flattened. Overrides and ``with_params`` take one dict per component:
    ``chain(r1, r2).apply(problem, clip_value={"value": 0.5})``. Each component records
    itself in ``notes["remedies"]``; tensor hooks are registered on the final model.

    Args:
        remedies: two or more ``Remedy`` objects (ids are resolved by ``registry.chain``).

    Returns:
        the chained ``Remedy`` (family ``"chain"``).
    """
    flat: list[Remedy] = []
    for remedy in remedies:
        if not isinstance(remedy, Remedy):
            raise TypeError(f"chain takes Remedy objects or remedy ids, got {type(remedy).__name__}")
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
    descriptions = "; then ".join(remedy.description for remedy in flat)
    return Remedy(
        id="+".join(ids),
        description=descriptions,
        family="chain",
        params={remedy.id: dict(remedy.params) for remedy in flat},
        requires=", ".join(sorted({remedy.requires for remedy in flat})),
        replaces_step=any(remedy.replaces_step for remedy in flat),
        components=tuple(flat),
    )
