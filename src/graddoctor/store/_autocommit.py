"""Commits that do not wait for the next step: on a pause, at interpreter exit, and on SIGTERM.

Every open writer of this process is registered here. A daemon thread per writer commits
what it holds once it has been idle for ``commit_seconds`` (evaluation, checkpointing); an
``atexit`` hook closes the writers still open; a SIGTERM handler (the usual preemption
signal), installed from the main thread only, commits them and then does exactly what the
handler it replaced would have done: call the user's handler, ignore the signal, or
terminate the process by it.
"""

from __future__ import annotations

import atexit
import os
import signal
import threading
import weakref
from typing import Any

_writers: weakref.WeakSet = weakref.WeakSet()
_registry_lock = threading.Lock()
_previous_sigterm: Any = None


def register(writer: Any) -> None:
    """Track ``writer`` for exit and SIGTERM commits (installs the SIGTERM handler once)."""
    with _registry_lock:
        _writers.add(writer)
    _install_sigterm()


def unregister(writer: Any) -> None:
    """Stop tracking a closed writer."""
    with _registry_lock:
        _writers.discard(writer)


def _open_writers() -> list[Any]:
    with _registry_lock:
        return list(_writers)


def start_pause_commits(writer: Any, interval: float) -> threading.Event:
    """A daemon thread calling ``writer.commit_if_idle()`` every ``interval`` seconds.

    The thread holds only a weak reference, so a writer dropped without ``close()`` can
    still be collected. Returns the event that stops the thread.
    """
    ref, stop = weakref.ref(writer), threading.Event()

    def loop() -> None:
        while not stop.wait(interval):
            alive = ref()
            if alive is None:
                return
            alive.commit_if_idle()
            del alive

    threading.Thread(target=loop, name="graddoctor-commit", daemon=True).start()
    return stop


def _forget_in_child() -> None:
    """A forked child (a DataLoader worker) never writes its parent's runs, nor waits on their locks."""
    global _registry_lock, _writers
    _registry_lock = threading.Lock()  # may have been held by another thread at the fork
    for writer in list(_writers):
        writer.forget_after_fork()
    _writers = weakref.WeakSet()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_in_child)


@atexit.register
def _close_at_exit() -> None:
    for writer in _open_writers():
        try:
            writer.close()
        except Exception:  # noqa: S110 - exiting anyway; the warning was given when it failed
            pass


def _install_sigterm() -> None:
    global _previous_sigterm
    if threading.current_thread() is not threading.main_thread():
        return
    try:
        current = signal.getsignal(signal.SIGTERM)
        if current is _on_sigterm or current is None:  # ours already, or set outside Python
            return
        signal.signal(signal.SIGTERM, _on_sigterm)
    except (ValueError, OSError, AttributeError):  # no SIGTERM here, or not allowed
        return
    _previous_sigterm = current


def _on_sigterm(signum: int, frame: Any) -> None:
    for writer in _open_writers():
        try:
            writer.commit_now()
        except Exception:  # noqa: S110 - the signal's own behaviour must still follow
            pass
    previous = _previous_sigterm
    if callable(previous):
        previous(signum, frame)
    elif previous == signal.SIG_IGN:
        return
    else:  # the default action: end the process by this signal
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
