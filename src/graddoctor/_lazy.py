"""Public names of a package imported on first use (PEP 562), so a light import stays light.

``import graddoctor`` and ``import graddoctor.monitor`` import nothing heavy: each public
name is looked up in a table and its module imported when the name is first read; any
other attribute is tried as a submodule.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_getattr(
    package: str, namespace: dict[str, Any], public: dict[str, tuple[str, str | None]]
) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package``.

    Args:
        package: the package's ``__name__``.
        namespace: its ``globals()``: a name, once imported, is bound there.
        public: public name -> ``(module, attribute)``, the module relative to ``package``;
            attribute None: the name is the module itself.
    """

    def __getattr__(name: str) -> Any:
        if name in public:
            module, attribute = public[name]
            found = importlib.import_module(module, package)
            value = found if attribute is None else getattr(found, attribute)
        elif not name.startswith("__"):
            try:
                value = importlib.import_module(f"{package}.{name}")
            except ModuleNotFoundError as err:
                if err.name != f"{package}.{name}":
                    raise
                raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
        else:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        namespace[name] = value
        return value

    return __getattr__


__all__ = ["lazy_getattr"]
