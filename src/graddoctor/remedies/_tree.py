"""Walking and editing the module tree of a nested model.

Shared by the remedies that rewrite architectures (activation swaps, normalisation
insertion, recurrent swaps). Works for ``nn.Sequential``, ``nn.ModuleList``,
``nn.ModuleDict`` and custom modules holding children as attributes. Which modules are
layers, activations or norms is for :mod:`graddoctor._modules` to say.

"Order" below is always *registration order* (the order of ``model.named_modules()``),
which is the order of execution for ``nn.Sequential`` and for the usual custom module
that registers its layers in the order ``forward`` calls them. A custom ``forward`` that
calls its children in another order, or reuses one child at several places, cannot be
seen from the module tree.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from torch import nn


def split_name(name: str) -> tuple[str, str]:
    """``"a.b.c"`` -> ``("a.b", "c")``; ``"c"`` -> ``("", "c")``."""
    if not name:
        raise ValueError("the root module has no parent: give the dotted name of a submodule")
    parent, _, child = name.rpartition(".")
    return parent, child


def parent_of(model: nn.Module, name: str) -> tuple[nn.Module, str]:
    """The module that holds ``name`` and the key under which it holds it.

    Args:
        model: the root module.
        name: a dotted name as given by ``model.named_modules()``.

    Returns:
        ``(parent, key)`` with ``parent._modules[key]`` the named module.
    """
    parent_name, key = split_name(name)
    try:
        parent = model.get_submodule(parent_name) if parent_name else model
    except AttributeError as error:
        raise ValueError(f"no submodule {parent_name!r} in the model: {error}") from None
    if key not in parent._modules:
        raise ValueError(f"no submodule {name!r} in the model (see model.named_modules())")
    return parent, key


def replace_module_(model: nn.Module, name: str, new: nn.Module) -> nn.Module:
    """Put ``new`` where ``name`` is, keeping its position among its siblings.

    Works for Sequential, ModuleList and ModuleDict entries (``"3"``, ``"key"``) and for
    attributes of custom modules. Only the slot ``name`` changes: if the old module is
    registered at other places too, those keep it.

    Returns:
        the module that was replaced.
    """
    if not isinstance(new, nn.Module):
        raise TypeError(f"replacement for {name!r} must be an nn.Module, got {type(new).__name__}")
    parent, key = parent_of(model, name)
    old = parent._modules[key]
    # Module.__setattr__ overwrites the entry of an existing key in place (order kept)
    setattr(parent, key, new)
    return old


def rebuild_sequential_(
    sequential: nn.Sequential, children: Iterable[tuple[str, nn.Module]]
) -> None:
    """Replace the children of ``sequential`` by ``children``, in that order, in place.

    The Sequential object keeps its identity (its parent and any hooks on it stay valid).
    """
    if not isinstance(sequential, nn.Sequential):
        raise TypeError(f"expected an nn.Sequential, got {type(sequential).__name__}")
    children = list(children)
    names = [name for name, _ in children]
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate child names in {names}")
    for name in list(sequential._modules):
        delattr(sequential, name)
    for name, module in children:
        sequential.add_module(name, module)


def unique_child_name(parent: nn.Module, wanted: str, taken: Iterable[str] = ()) -> str:
    """``wanted``, or ``wanted_1``, ``wanted_2``... if a child or attribute has the name."""
    taken = set(taken)

    def free(candidate: str) -> bool:
        return (
            candidate not in taken
            and candidate not in parent._modules
            and not hasattr(parent, candidate)
        )

    if free(wanted):
        return wanted
    index = 1
    while not free(f"{wanted}_{index}"):
        index += 1
    return f"{wanted}_{index}"


def leaf_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Modules without children, with their dotted names, in registration order.

    A module registered at several places appears once per place (each place is a slot a
    remedy may edit). The root itself is returned (as ``""``) when it has no children.
    """
    return [
        (name, module)
        for name, module in model.named_modules(remove_duplicate=False)
        if not module._modules
    ]


def first_parameter(module: nn.Module) -> Any:
    """The first parameter or buffer of ``module`` (for its device and dtype), or None."""
    for tensor in module.parameters():
        return tensor
    for tensor in module.buffers():
        return tensor
    return None


def preceding_leaf(
    leaves: Sequence[tuple[str, nn.Module]],
    index: int,
    wanted: Callable[[nn.Module], bool],
    transparent: Callable[[nn.Module], bool],
) -> int | None:
    """Walk back from ``leaves[index]`` to the nearest leaf for which ``wanted`` holds.

    Leaves for which ``transparent`` holds are stepped over; any other leaf stops the
    walk and gives None.

    Returns:
        the index of the found leaf, or None.
    """
    for back in range(index - 1, -1, -1):
        module = leaves[back][1]
        if wanted(module):
            return back
        if not transparent(module):
            return None
    return None


def split_only(
    only: Any, allowed: tuple[type[nn.Module], ...], what: str
) -> tuple[tuple[type[nn.Module], ...], tuple[str, ...]]:
    """Split an ``only=`` argument into module types and fnmatch name patterns.

    Args:
        only: None, a type, a pattern string, or a tuple/list mixing both.
        allowed: the types a given type must be a subclass of.
        what: what the types stand for, for the error message ("activation").

    Returns:
        ``(types, patterns)``; both empty for ``only=None``.
    """
    if only is None:
        return (), ()
    items = (only,) if isinstance(only, (str, type)) else tuple(only)
    types: list[type[nn.Module]] = []
    patterns: list[str] = []
    for item in items:
        if isinstance(item, str):
            patterns.append(item)
        elif isinstance(item, type) and issubclass(item, allowed):
            types.append(item)
        else:
            names = ", ".join(t.__name__ for t in allowed)
            raise TypeError(
                f"only= takes {what} module types ({names}) and/or name glob patterns "
                f"such as 'encoder.*'; got {item!r}"
            )
    return tuple(types), tuple(patterns)


def name_matches(name: str, patterns: Sequence[str]) -> bool:
    """Whether the dotted ``name`` matches any fnmatch pattern (True when there are none)."""
    return not patterns or any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)
