r"""Clip-aware measurement: an open Monitor reads the gradients before the loop's clipping.

A loop that clips between ``backward()`` and ``optimizer.step()`` (nanoGPT:
``torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)``) hands the optimizer
gradients of norm at most the threshold, so a step pre-hook would read the threshold on
every clipped step and hide an explosion. While at least one Monitor is open,
``clip_grad_norm_``, ``clip_grad_value_`` and ``clip_grads_with_norm_`` of
``torch.nn.utils`` (and ``torch.nn.utils.clip_grad``) are replaced by wrappers, restored
when the last Monitor closes; graddoctor's own clip functions carry the same wrapper
(:func:`watched_clip`). A wrapped call

1. tells each open Monitor whose parameters it clips to measure its current step now
   (the same measurement as the step pre-hook, which then does not measure again);
2. calls the original function, unchanged;
3. hands those Monitors the clip's scalars (names in :mod:`graddoctor.probes.clipping`):
   its threshold, whether it fired (``total_norm > threshold``; for value clipping
   ``max |g| > clip_value``) and the norm before it, all left on the device.

Functions bound to a name before the Monitor opened (``from torch.nn.utils import
clip_grad_norm_``) are not seen: call them through the module (as nanoGPT does) or use
``graddoctor.clip``. FSDP1's ``model.clip_grad_norm_()`` is not seen either.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import math
import threading
import types
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.utils
import torch.nn.utils.clip_grad

from .._foreach import max_abs
from ..probes._output_stats import squared_norm
from ..probes.clipping import CLIP_FIRED, CLIP_THRESHOLD, CLIP_TOTAL_NORM, clip_fired

NORM, VALUE, WITH_NORM = "norm", "value", "with_norm"  # what a clip function takes
# torch's functions wrapped while a Monitor is open, by the module attributes naming them
TORCH_CLIPS = {
    "clip_grad_norm_": NORM,
    "clip_grad_value_": VALUE,
    "clip_grads_with_norm_": WITH_NORM,
}
_MODULES = (torch.nn.utils, torch.nn.utils.clip_grad)


@dataclass
class ClipCall:
    """One clip call: its threshold, the norm before it and whether it fired (0-d, on the device)."""

    threshold: float
    total_norm: torch.Tensor
    fired: torch.Tensor


class Observer:
    """A Monitor's interest in clip calls (held weakly: a Monitor never closed can still be freed).

    Args:
        parameters: the Monitor's parameters; a clip of any of them concerns it.
        before: a bound method called before the clip (measure the step now).
        after: a bound method called with the :class:`ClipCall` after it (or None if the
            scalars could not be taken).
    """

    def __init__(
        self,
        parameters: Iterable[torch.Tensor],
        before: Callable[[], None],
        after: Callable[[ClipCall | None], None],
    ) -> None:
        self.ids = frozenset(id(p) for p in parameters)
        self._before, self._after = weakref.WeakMethod(before), weakref.WeakMethod(after)

    @property
    def alive(self) -> bool:
        return self._before() is not None

    def before(self) -> None:
        method = self._before()
        if method is not None:
            with contextlib.suppress(Exception):  # the Monitor warns itself; the clip runs on
                method()

    def after(self, call: ClipCall | None) -> None:
        method = self._after()
        if method is not None:
            with contextlib.suppress(Exception):
                method(call)

    def remove(self) -> None:
        """Stop watching (a hook handle's name for :func:`unwatch`)."""
        unwatch(self)


_lock = threading.RLock()
_observers: list[Observer] = []
_patched: list[tuple[Any, str, Any, Any]] = []  # (module, name, original, wrapper)
_local = threading.local()  # .inside: a wrapped clip is running on this thread


def watch(observer: Observer) -> Observer:
    """Start sending clip calls to ``observer``; the first one wraps torch's functions."""
    with _lock:
        _observers[:] = [o for o in _observers if o.alive]
        _observers.append(observer)
        if not _patched:
            _patch()
    return observer


def unwatch(observer: Observer) -> None:
    """Stop sending clip calls to ``observer``; the last one puts torch's functions back."""
    with _lock:
        _observers[:] = [o for o in _observers if o is not observer and o.alive]
        if not _observers:
            _restore()


def _patch() -> None:
    wrappers: dict[int, Any] = {}  # one wrapper per function, under each of its names
    for module in _MODULES:
        for name, kind in TORCH_CLIPS.items():
            original = getattr(module, name, None)
            if original is None or getattr(original, "__graddoctor_clip__", None):
                continue
            wrapper = wrappers.setdefault(id(original), watched_clip(kind)(original))
            setattr(module, name, wrapper)
            _patched.append((module, name, original, wrapper))


def _restore() -> None:
    for module, name, original, wrapper in reversed(_patched):
        if getattr(module, name, None) is wrapper:  # replaced since by someone else: theirs stays
            setattr(module, name, original)
    _patched.clear()


def watched_clip(kind: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorate a clip function so that open Monitors read the gradients before it runs.

    Args:
        kind: ``"norm"`` (``f(parameters, max_norm, ...)`` returning the norm before
            clipping), ``"value"`` (``f(parameters, clip_value, ...)``) or ``"with_norm"``
            (``f(parameters, max_norm, total_norm, ...)``).
    """

    def decorate(function: Callable[..., Any]) -> Callable[..., Any]:
        names = list(inspect.signature(function).parameters)[:3]

        @functools.wraps(function)
        def clip(*args: Any, **kwargs: Any) -> Any:
            if not _observers or getattr(_local, "inside", False):
                return function(*args, **kwargs)
            return _observed(function, kind, names, args, kwargs)

        clip.__graddoctor_clip__ = True
        return clip

    return decorate


def _argument(args: tuple, kwargs: dict, names: list[str], index: int) -> Any:
    if index < len(args):
        return args[index]
    return kwargs.get(names[index]) if index < len(names) else None


def _observed(
    function: Callable[..., Any], kind: str, names: list[str], args: tuple, kwargs: dict
) -> Any:
    given = _argument(args, kwargs, names, 0)
    if given is None:
        return function(*args, **kwargs)
    if isinstance(given, torch.Tensor):
        params = [given]
    else:  # a generator is read once here and handed on as a generator (torch warns if empty)
        params = list(given)
        again = (p for p in params) if isinstance(given, types.GeneratorType) else params
        if len(args) > 0:
            args = (again, *args[1:])
        else:
            kwargs = {**kwargs, names[0]: again}
    ids = {id(p) for p in params}
    with _lock:
        _observers[:] = [o for o in _observers if o.alive]  # Monitors freed without close()
        if not _observers:
            _restore()
        concerned = [o for o in _observers if o.ids & ids]
    if not concerned:
        return function(*args, **kwargs)
    for observer in concerned:
        observer.before()
    threshold = _argument(args, kwargs, names, 1)
    before = _value_clip_inputs(params) if kind == VALUE else None
    _local.inside = True
    try:
        result = function(*args, **kwargs)
    finally:
        _local.inside = False
    try:
        call = _call(kind, threshold, result, before, _argument(args, kwargs, names, 2))
    except Exception:  # the clip ran; only its scalars are missing
        call = None
    for observer in concerned:
        observer.after(call)
    return result


def _value_clip_inputs(params: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The largest |g| and the 2-norm of the gradients a value clip is about to clamp."""
    grads = [p.grad.detach() for p in params if p.grad is not None]
    if not grads:
        return None
    try:
        device = grads[0].device
        squares = torch.stack([squared_norm(g).to(device) for g in grads])
        return max_abs(grads, device).amax(), squares.sum().sqrt()
    except Exception:
        return None


def _call(kind: str, threshold: Any, result: Any, before: Any, total_norm: Any) -> ClipCall | None:
    threshold = float(threshold)
    if kind == VALUE:
        if before is None:
            return None
        largest, total = before
        return ClipCall(threshold, total, clip_fired(largest, threshold))
    norm = result if kind == NORM else total_norm
    if not isinstance(norm, torch.Tensor):
        return None
    norm = norm.detach()
    if norm.dim() == 0:
        return ClipCall(threshold, norm, clip_fired(norm, threshold))
    # one norm per tensor (graddoctor's per_layer=True): each clipped to the threshold
    total = torch.linalg.vector_norm(norm.double())
    return ClipCall(threshold, total, clip_fired(norm, threshold).amax())


def clip_scalars(calls: list[ClipCall]) -> dict[str, torch.Tensor]:
    """The scalars of a step's clip calls, on the device.

    ``clip/total_norm`` is the first call's norm (the gradient before any clipping of the
    step); ``clip/threshold`` the smallest threshold; ``clip/fired`` the fraction of the
    calls with a finite threshold that fired (an infinite one only measures).
    """
    if not calls:
        return {}
    first = calls[0].total_norm
    finite = [c for c in calls if math.isfinite(c.threshold)]
    fired = (
        torch.stack([c.fired.to(first.device, torch.float64) for c in finite]).mean()
        if finite
        else None
    )
    threshold = min(c.threshold for c in calls)
    return {
        CLIP_THRESHOLD: torch.full_like(first, threshold, dtype=torch.float64),
        CLIP_FIRED: fired if fired is not None else torch.zeros_like(first, dtype=torch.float64),
        CLIP_TOTAL_NORM: first,
    }


__all__ = [
    "ClipCall",
    "Observer",
    "TORCH_CLIPS",
    "clip_scalars",
    "unwatch",
    "watch",
    "watched_clip",
]
