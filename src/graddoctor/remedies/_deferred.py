"""A remedy's transform or check named by where its code lives, imported on its first call.

The registry's entries (ids, descriptions, what they treat, settings) are read without
torch: ``graddoctor diagnose`` and ``report`` pick remedies by that metadata alone. The code
acting on a model imports torch; an entry names it by module and function, and it is
imported when a remedy is first applied or checked.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


class Deferred:
    """A function imported on first call: ``Deferred("graddoctor.remedies.lr", "_warmup")``.

    Args:
        module: the module defining it (absolute).
        name: the function's name there.
        *args: when given, ``function(*args)`` is the callable (a factory, e.g. the
            transform of one initialisation scheme).
    """

    __slots__ = ("module", "name", "args", "_function")

    def __init__(self, module: str, name: str, *args: Any) -> None:
        self.module, self.name, self.args = module, name, args
        self._function: Callable[..., Any] | None = None

    @property
    def function(self) -> Callable[..., Any]:
        """The function itself (its module imported on first use)."""
        if self._function is None:
            found = getattr(importlib.import_module(self.module), self.name)
            self._function = found(*self.args) if self.args else found
        return self._function

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.function(*args, **kwargs)

    def __repr__(self) -> str:
        extra = "".join(f", {a!r}" for a in self.args)
        return f"Deferred({self.module!r}, {self.name!r}{extra})"


__all__ = ["Deferred"]
