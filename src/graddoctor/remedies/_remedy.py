r"""The one remedy protocol: a ``Remedy`` turns a ``Problem`` into a new one, never touching it.

Every family of :mod:`graddoctor.remedies` declares its remedies as :class:`Remedy`
entries (``REMEDIES``): a stable id, a one-line description naming the paper, default
parameters, an applicability check, a transform, and the findings it treats. The entries
are read without torch (the diagnosis picks remedies by what they treat): their transform
and check name the code acting on a model, imported when a remedy is first applied
(:class:`~graddoctor.remedies._deferred.Deferred`). ``apply`` always works on
``problem.copy()`` (a deep-copied model; data and callables shared) and records what it
did in ``notes["remedies"]``. Composition lives in :mod:`graddoctor.remedies.chain`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the registry is read without torch; a Problem is checked when applied
    from graddoctor.problem import Problem

# (problem) -> None when the remedy applies, else one sentence saying why not and what to do
Check = Callable[["Problem"], "str | None"]
# (working copy of the problem, resolved params) -> the new problem; may change the copy's model
Transform = Callable[["Problem", dict[str, Any]], "Problem"]

# notes keys written by the protocol and by remedies
REMEDIES_NOTE = "remedies"  # [{"id": ..., "params": {...}}, ...] in the order applied
BACKWARD_CLIP_NOTE = "backward_clip"  # a handle owning tensor hooks, with .reattach(params)
STEP_REMEDY_NOTE = "step_fn_remedy"  # id of the remedy that set Problem.step_fn

# what ``Remedy.activations`` and ``registry.remedies_for(..., activation=)`` speak of:
# the model's activations, as the initialisation papers group them (He et al. 2015 for
# the ReLU family, Klambauer et al. 2017 for SELU, Glorot & Bengio 2010 otherwise)
ACTIVATION_KINDS = ("rectifier", "selu", "saturating", "none")


@dataclass(frozen=True)
class Remedy:
    r"""A registered remedy: metadata plus ``apply(problem, **overrides) -> Problem``.

    Attributes:
        id: the stable string users grep for (``"clip_norm"``); ``"a+b"`` for a chain.
        description: one line naming the method and its paper.
        params: the default parameters; ``apply``'s keyword overrides must be among them.
        transform: ``(working_copy, params) -> Problem``; internal.
        check: ``(problem) -> reason or None``; internal.
        replaces_step: whether the remedy sets ``Problem.step_fn`` (at most one per problem).
        treats: ``{situation: rank}``: the findings this remedy treats, rank 1 first. A
            situation is a finding kind (``"exploding_gradients"``), possibly refined by
            what else the run shows (``"exploding_gradients_over_time"``); see
            :func:`graddoctor.remedies.registry.remedies_for`.
        activations: the :data:`ACTIVATION_KINDS` this remedy is meant for (empty: any);
            decides between remedies sharing a rank (an init per activation).
        components: the remedies of a chain, in order (empty for a single remedy).
        settings: ``{framework: setting}``: what a user of that framework changes instead
            (``{"keras": 'kernel_initializer="he_normal"'}``); see ``remedies.frameworks``.
    """

    id: str
    description: str
    params: Mapping[str, Any] = field(default_factory=dict, hash=False)
    transform: Transform | None = field(default=None, repr=False, compare=False)
    check: Check | None = field(default=None, repr=False, compare=False)
    replaces_step: bool = False
    treats: Mapping[str, int] = field(default_factory=dict, hash=False, repr=False)
    activations: tuple[str, ...] = ()
    components: tuple[Remedy, ...] = field(default=(), repr=False)
    settings: Mapping[str, str] = field(default_factory=dict, hash=False, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id:
            raise ValueError(f"a remedy id must be a non-empty string, got {self.id!r}")
        if not isinstance(self.description, str) or "\n" in self.description.strip():
            raise ValueError(f"remedy {self.id!r}: the description must be one line")
        if not isinstance(self.params, Mapping):
            raise TypeError(
                f"remedy {self.id!r}: params must be a mapping, got {type(self.params).__name__}"
            )
        if self.transform is None and not self.components:
            raise ValueError(f"remedy {self.id!r} needs a transform (or components, for a chain)")
        bad_ranks = {
            k: v
            for k, v in self.treats.items()
            if isinstance(v, bool) or not isinstance(v, int) or v < 1
        }
        if bad_ranks:
            raise ValueError(f"remedy {self.id!r}: treats ranks must be ints >= 1, got {bad_ranks}")
        unknown = sorted(set(self.activations) - set(ACTIVATION_KINDS))
        if unknown:
            raise ValueError(
                f"remedy {self.id!r}: activations must be among {ACTIVATION_KINDS}, got {unknown}"
            )
        object.__setattr__(self, "params", dict(self.params))
        object.__setattr__(self, "treats", MappingProxyType(dict(self.treats)))
        object.__setattr__(self, "settings", MappingProxyType(dict(self.settings)))

    def applicable(self, problem: Problem) -> tuple[bool, str]:
        """Whether ``apply`` can run on ``problem``, and if not, why (empty reason when it can)."""
        check_problem(problem)
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
        check_problem(problem)
        params = self._resolve(overrides)
        reason = self._reason(problem)
        if reason is not None:
            raise ValueError(
                f"remedy {self.id!r} does not apply to problem {problem.name!r}: {reason}"
            )
        original_hooks = problem.notes.get(BACKWARD_CLIP_NOTE)
        working = problem.copy()  # deep-copied model, new notes dict; data and callables shared
        result = self._apply_to_copy(working, params)
        return _reattach_hooks(result, original_hooks)

    def with_params(self, **overrides: Any) -> Remedy:
        """The same remedy with other default parameters (unknown names raise ``TypeError``)."""
        return replace(self, params=self._resolve(overrides))

    def _reason(self, problem: Problem) -> str | None:
        reason = self.check(problem) if self.check is not None else None
        if reason is None and self.replaces_step:
            reason = _free_step_reason(problem, self.id)
        return reason

    def _resolve(self, overrides: Mapping[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(overrides) - set(self.params))
        if unknown:
            valid = ", ".join(sorted(self.params)) or "none"
            what = "component" if self.components else "parameter"
            raise TypeError(
                f"remedy {self.id!r} got unknown {what}(s) {', '.join(unknown)}; valid {what}s: {valid}"
            )
        return {**self.params, **overrides}

    def _apply_to_copy(self, working: Problem, params: dict[str, Any]) -> Problem:
        from graddoctor.problem import Problem

        result = self.transform(working, dict(params))
        if not isinstance(result, Problem):
            raise TypeError(f"remedy {self.id!r} returned {type(result).__name__}, not a Problem")
        notes = dict(result.notes)  # a new list every time: copies share the notes' values
        notes[REMEDIES_NOTE] = [
            *notes.get(REMEDIES_NOTE, ()),
            {"id": self.id, "params": dict(params)},
        ]
        if self.replaces_step:
            notes[STEP_REMEDY_NOTE] = self.id
        return result.replace(notes=notes)


def check_problem(problem: Any) -> None:
    """``TypeError`` unless ``problem`` is a graddoctor ``Problem``."""
    from graddoctor.problem import Problem

    if not isinstance(problem, Problem):
        raise TypeError(
            f"remedies apply to a graddoctor Problem, got {type(problem).__name__}: build one with "
            "Problem(model, data, loss_fn, optimizer)"
        )


def _free_step_reason(problem: Problem, remedy_id: str) -> str | None:
    """Why ``remedy_id`` cannot replace the training step (another step function is set)."""
    if problem.step_fn is None:
        return None
    owner = problem.notes.get(STEP_REMEDY_NOTE)
    source = f" (set by remedy {owner!r})" if owner else ""
    name = getattr(problem.step_fn, "__name__", type(problem.step_fn).__name__)
    return (
        f"{remedy_id} replaces the training step, but the problem already has step_fn {name}{source}: "
        "only one remedy may replace the step"
    )


def _reattach_hooks(problem: Problem, original: Any) -> Problem:
    """Put the tensor hooks of ``notes["backward_clip"]`` on the final model's parameters.

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
    notes[BACKWARD_CLIP_NOTE] = handle.reattach(problem.model.parameters())
    return problem.replace(notes=notes)
