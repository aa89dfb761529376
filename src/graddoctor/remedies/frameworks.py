"""What a remedy id means in another framework's own settings: the one table of them.

A run recorded through a framework integration says which framework it came from
(``config["framework"]``, e.g. ``"keras"`` from ``graddoctor.integrations.keras``). The
remedies themselves transform torch models; a Keras user changes a setting instead, and
the diagnosis names it beside the remedy id (:func:`framework_note`). Remedies without an
equivalent setting are left out of the note.
"""

from __future__ import annotations

from collections.abc import Sequence

FRAMEWORK_NAMES = {"keras": "Keras"}

SETTINGS: dict[str, dict[str, str]] = {
    "keras": {
        "init_he": 'kernel_initializer="he_normal" on the Dense/Conv layers before ReLUs',
        "init_glorot": 'kernel_initializer="glorot_uniform" (Keras\' default)',
        "init_lecun": 'kernel_initializer="lecun_normal" with activation="selu"',
        "init_orthogonal": 'kernel_initializer="orthogonal" (recurrent_initializer="orthogonal" in RNNs)',
        "swap_activation": 'activation="relu" with kernel_initializer="he_normal"',
        "batchnorm": "keras.layers.BatchNormalization() after each Dense, before its activation",
        "clip_value": "clipvalue=1.0 on the optimizer",
        "clip_norm": "global_clipnorm=1.0 on the optimizer (clipnorm=1.0 clips each weight tensor alone)",
        "lower_lr": "a learning_rate 10x smaller on the optimizer",
        "warmup": "learning_rate=keras.optimizers.schedules.CosineDecay(..., warmup_target=lr, warmup_steps=20)",
        "standardize_target": "standardise y (zero mean, unit variance) before fit",
        "lstm": "keras.layers.LSTM instead of SimpleRNN",
        "gru": "keras.layers.GRU instead of SimpleRNN",
    },
}

MAX_NAMED = 3  # settings named in one finding's message


def framework_settings(framework: str | None) -> dict[str, str]:
    """Remedy id -> the framework's setting for it (empty for plain PyTorch or an unknown framework)."""
    return SETTINGS.get(framework or "", {})


def framework_note(remedy_ids: Sequence[str], framework: str | None) -> str:
    """One sentence naming the framework's settings for the first remedies that have one.

    Args:
        remedy_ids: a finding's remedies, most preferred first.
        framework: the run's ``config["framework"]`` (None for plain PyTorch).

    Returns:
        e.g. ``' In Keras: global_clipnorm=1.0 on the optimizer (clip_norm).'``; ``""``
        when none of the remedies has a setting there.
    """
    settings = framework_settings(framework)
    named = [f"{settings[r]} ({r})" for r in remedy_ids if r in settings][:MAX_NAMED]
    if not named:
        return ""
    return f" In {FRAMEWORK_NAMES.get(framework or '', framework)}: {'; '.join(named)}."


__all__ = ["FRAMEWORK_NAMES", "SETTINGS", "framework_note", "framework_settings"]
