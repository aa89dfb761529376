"""Importing ``PKG.MODULE:FUNCTION`` (or ``path/to/file.py:FUNCTION``) for ``checkup`` and ``compare``.

The current folder (or the file's folder) is put first on ``sys.path`` only while the
target is imported, as ``python`` would for a script; afterwards ``sys.path`` is as it
was, so a ``statistics.py`` lying in the current folder never shadows the standard
library later.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any


class TargetError(ValueError):
    """A target that cannot be imported, called, or does not return a Problem."""


@contextlib.contextmanager
def _first_on_path(folder: Path) -> Iterator[None]:
    entry = str(folder)
    added = entry not in sys.path
    if added:
        sys.path.insert(0, entry)
    try:
        yield
    finally:
        if added and entry in sys.path:
            sys.path.remove(entry)


def import_target(name: str) -> ModuleType:
    """The module ``name`` (dotted, from the current folder first) or the file ``name.py``."""
    try:
        if not name.endswith(".py"):
            with _first_on_path(Path.cwd()):
                return importlib.import_module(name)
        path = Path(name)
        if not path.is_file():
            raise TargetError(f"no Python file at {path}")
        spec = importlib.util.spec_from_file_location(path.stem, path)
        if spec is None or spec.loader is None:
            raise TargetError(f"cannot load {path}")
        module = importlib.util.module_from_spec(spec)
        registered = path.stem not in sys.modules  # never replace a module already imported
        if registered:
            sys.modules[path.stem] = module
        try:
            with _first_on_path(path.resolve().parent):
                spec.loader.exec_module(module)
        except BaseException:
            if registered:
                sys.modules.pop(path.stem, None)
            raise
        return module
    except TargetError:
        raise
    except (Exception, SystemExit) as err:
        raise TargetError(f"cannot import {name}: {type(err).__name__}: {err}") from err


def load_problem(target: str) -> Any:
    """Import ``target`` and call its function for a :class:`~graddoctor.Problem`.

    Raises:
        TargetError: a malformed target, an import that fails (syntax error, exception,
            missing module), no such function, a function that raises, or a result that
            is not a Problem.
    """
    from ..problem import Problem

    module_name, sep, function_name = target.rpartition(":")
    if not sep or not module_name or not function_name:
        raise TargetError(
            f"expected PKG.MODULE:FUNCTION or path/to/file.py:FUNCTION, got {target!r}"
        )
    module = import_target(module_name)
    function = getattr(module, function_name, None)
    if not callable(function):
        raise TargetError(f"{module_name} has no function {function_name!r}")
    try:
        problem = function()
    except (Exception, SystemExit) as err:
        raise TargetError(f"{target} raised {type(err).__name__}: {err}") from err
    if not isinstance(problem, Problem):
        raise TargetError(f"{target} returned {type(problem).__name__}, not a graddoctor.Problem")
    return problem
