"""A remedy in another framework's own settings: the diagnosis names them for runs from there.

A run recorded through a framework integration says which framework it came from
(``config["framework"]``, e.g. ``"keras"`` from ``graddoctor.integrations.keras``). The
remedies transform torch models; a Keras user changes a setting instead. Each remedy
declares its settings in its entry (``Remedy.settings``, e.g. the initializer name,
``clipnorm``, a ``BatchNormalization`` layer); :func:`framework_note` reads them for a
finding's remedies. Remedies without a setting in that framework are left out.
"""

from __future__ import annotations

from collections.abc import Sequence

from graddoctor.remedies.registry import get_remedy

FRAMEWORK_NAMES = {"keras": "Keras"}
MAX_NAMED = 3  # settings named in one finding's message


def framework_note(remedy_ids: Sequence[str], framework: str | None) -> str:
    """One sentence naming the framework's settings for the first remedies that declare one.

    Args:
        remedy_ids: a finding's remedies, most preferred first.
        framework: the run's ``config["framework"]`` (None for plain PyTorch).

    Returns:
        e.g. ``' In Keras: global_clipnorm=1.0 on the optimizer (...) (clip_norm).'``;
        ``""`` for plain PyTorch or when no remedy declares a setting there.
    """
    if not framework:
        return ""
    named = []
    for remedy_id in remedy_ids:
        setting = get_remedy(remedy_id).settings.get(framework)
        if setting:
            named.append(f"{setting} ({remedy_id})")
    if not named:
        return ""
    return f" In {FRAMEWORK_NAMES.get(framework, framework)}: {'; '.join(named[:MAX_NAMED])}."


__all__ = ["FRAMEWORK_NAMES", "framework_note"]
