r"""The scalars a clipped training step records: the threshold, whether it fired, the norm before.

Gradient norm clipping (Pascanu, Mikolov & Bengio 2013, "On the difficulty of training
recurrent neural networks", algorithm 1) rescales the gradient when its norm passes a
threshold :math:`c`:

.. math:: g \leftarrow \frac{c}{\|g\|} g \quad \text{if } \|g\| > c.

Gradients read after the clip have norm at most :math:`c`, so a step whose clip fired
records exactly :math:`c` and hides how large the gradient was. A recorder that sees the
clip (``torch.nn.utils.clip_grad_norm_`` or graddoctor's own) logs, per optimizer step:

* :data:`CLIP_THRESHOLD`: :math:`c`;
* :data:`CLIP_FIRED`: 1 when :math:`\|g\| > c`, else 0 (a fraction when several clips ran
  in one step, e.g. one per accumulated micro-batch);
* :data:`CLIP_TOTAL_NORM`: :math:`\|g\|` before clipping, as ``clip_grad_norm_`` returns it.

``graddoctor.diagnosis.clipping`` reads them. The names are declared here, below the
Monitor, so both the recorder and the diagnosis import them from one place.
"""

from __future__ import annotations

CLIP_THRESHOLD = "clip/threshold"
CLIP_FIRED = "clip/fired"
CLIP_TOTAL_NORM = "clip/total_norm"
CLIP_SCALARS = (CLIP_THRESHOLD, CLIP_FIRED, CLIP_TOTAL_NORM)


def clip_fired(total_norm, threshold):
    """1.0 where a norm clip with ``threshold`` rescales a gradient of norm ``total_norm``, else 0.0.

    Args:
        total_norm: the norm before clipping, a float or a tensor (kept on its device).
        threshold: :math:`c`.

    Returns:
        a float, or a float tensor shaped like ``total_norm`` (no host sync).
    """
    return (total_norm > threshold) * 1.0


__all__ = ["CLIP_FIRED", "CLIP_SCALARS", "CLIP_THRESHOLD", "CLIP_TOTAL_NORM", "clip_fired"]
