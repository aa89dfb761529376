"""Who owns a run file: created exclusively, and locked by its writer for as long as it writes.

The writer creates the file with ``O_CREAT | O_EXCL`` (two writers started together on one
path: exactly one wins) and holds an exclusive ``flock`` on it until it closes; the kernel
drops the lock when the process dies, even by SIGKILL. ``overwrite=True`` replaces a
finished run but refuses one whose writer still holds the lock, and readers use the lock
to tell a live run from a finished one. Without ``fcntl`` (Windows) only the exclusive
creation applies.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

SIDECARS = ("-wal", "-shm", "-journal")


def _try_lock(fd: int, exclusive: bool = True) -> bool:
    if fcntl is None:  # pragma: no cover
        return True
    try:
        fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _lock_new_file(fd: int, wait_s: float = 2.0) -> bool:
    """Take the writer lock on a file this process just created.

    Readers probe liveness with a shared lock held for microseconds (:func:`is_live`); one
    may hold it at the moment the creator asks, so the creator retries for ``wait_s``
    instead of mistaking a probe for a rival writer.
    """
    deadline = time.monotonic() + wait_s
    while not _try_lock(fd):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.001)
    return True


def is_live(path: Path) -> bool:
    """Whether a writer holds ``path`` now (False when unknown: no such file, no ``fcntl``)."""
    if fcntl is None:  # pragma: no cover
        return False
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return False
    try:
        return not _try_lock(fd, exclusive=False)
    finally:
        os.close(fd)


def _os_error(err: OSError, message: str) -> OSError:
    """``err`` of the same class, with a message that names the path and says what failed."""
    return type(err)(message)


def claim(path: Path, overwrite: bool) -> int:
    """Create ``path`` for a new run and hold its writer lock.

    Args:
        path: the run file.
        overwrite: replace a finished run at ``path`` (never a live one).

    Returns:
        the file descriptor holding the lock; :func:`release` it after the database closes.

    Raises:
        FileExistsError: ``path`` exists (and ``overwrite`` is False), or another process
            writes it now, or took it first.
        IsADirectoryError: ``path`` is a folder.
        OSError: the folder cannot be created or written (the message names it).
    """
    if path.is_dir():
        raise IsADirectoryError(
            f"{path} is a folder, not a run file: give the file's path, e.g. {path / 'run.gdr'}"
        )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise _os_error(
            err, f"cannot create the folder {path.parent} of run file {path}: {err.strerror}"
        ) from None
    if overwrite and path.exists():
        _remove_finished(path)
    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags, 0o644)
    except FileExistsError:
        if is_live(path):
            raise FileExistsError(
                f"run file {path} is being written by another process now"
            ) from None
        raise FileExistsError(
            f"run file {path} already exists: choose another path or pass overwrite=True"
        ) from None
    except OSError as err:
        raise _os_error(err, f"cannot create run file {path}: {err.strerror}") from None
    try:
        if not _lock_new_file(fd) or os.fstat(fd).st_ino != os.stat(path).st_ino:
            raise FileExistsError(f"run file {path} was taken by another writer at the same moment")
    except BaseException:
        os.close(fd)
        raise
    for suffix in SIDECARS:  # left by an earlier file of that name: never replay them into this one
        Path(str(path) + suffix).unlink(missing_ok=True)
    return fd


def _remove_finished(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        return
    try:
        if not _try_lock(fd):
            raise FileExistsError(
                f"run file {path} is being written by another process now: not overwriting a live run"
            )
        for suffix in ("", *SIDECARS):
            Path(str(path) + suffix).unlink(missing_ok=True)
    finally:
        os.close(fd)


def release(fd: int) -> None:
    """Drop the writer lock (also for forked children sharing it) and close the descriptor."""
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
