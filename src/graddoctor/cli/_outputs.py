"""Output paths checked before any work: a file option is not a folder, a folder option not a file,
and the folder can be created. Every message names the path and the option."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ._errors import fail


def _make_folder(console: Any, option: str, path: Path, folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        fail(console, f"{option} {path}: cannot create the folder {folder} ({err.strerror or err})")
    if not os.access(folder, os.W_OK):
        fail(console, f"{option} {path}: the folder {folder} is not writable")


def output_file(console: Any, option: str, path: Path, example: str) -> Path:
    """Exit 2 unless ``path`` can be written as a file.

    Args:
        console: where the error goes.
        option: the option's name, for the message.
        path: the file to write.
        example: a file name to suggest when ``path`` is a folder.
    """
    if path.is_dir():
        fail(console, f"{option} {path} is a folder: give a file path, e.g. {path / example}")
    _make_folder(console, option, path, path.parent)
    if path.exists() and not os.access(path, os.W_OK):
        fail(console, f"{option} {path} is not writable")
    return path


def output_folder(console: Any, option: str, path: Path) -> Path:
    """Exit 2 unless ``path`` is (or can be created as) a writable folder."""
    if path.exists() and not path.is_dir():
        fail(console, f"{option} {path} is a file, not a folder")
    _make_folder(console, option, path, path)
    return path
