"""``graddoctor.clip``: gradient clipping, under ``torch.nn.utils``'s names.

``clip_grad_norm_``, ``clip_grad_value_``, ``get_total_norm`` and ``clip_grads_with_norm_``
take torch's arguments and give its results; ``clip_norm_``, ``clip_value_`` and
``total_norm`` are graddoctor 0.x's names, kept for one release. The names and their
list live in :mod:`graddoctor.remedies.clip`; this module re-exports them.
"""

from graddoctor.remedies import clip as _family
from graddoctor.remedies.clip import *  # noqa: F403

__all__ = _family.__all__
