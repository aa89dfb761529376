"""Import an optional dependency, or fail with a one-line install hint."""

from __future__ import annotations

import importlib
from types import ModuleType


def require(module: str, *, feature: str, package: str | None = None) -> ModuleType:
    """Import ``module`` or raise ImportError telling how to install it.

    Args:
        module: the module to import, e.g. ``"lightning.pytorch"``.
        feature: what needs it, for the message, e.g. ``"graddoctor.integrations.lightning"``.
        package: the pip package that provides it (default: the top-level module name).

    Returns:
        the imported module.

    Raises:
        ImportError: ``"<feature> needs <package>: pip install <package>"``.
    """
    package = package or module.split(".")[0]
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ImportError(f"{feature} needs {package}: pip install {package}") from err


def first_available(*modules: str, feature: str, package: str) -> ModuleType:
    """The first of ``modules`` that imports (e.g. ``lightning.pytorch`` or ``pytorch_lightning``).

    Raises:
        ImportError: none imports; the message names ``package`` to install.
    """
    for module in modules:
        try:
            return importlib.import_module(module)
        except ImportError:
            continue
    raise ImportError(f"{feature} needs {package}: pip install {package}")
