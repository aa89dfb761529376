r"""The loss of each optimizer step under ``graddoctor run``, from what ``backward()`` received.

The one-element tensors backpropagated since the previous optimizer step (of any
optimizer) form the step's group, and the loss recorded for the step is their sum
:math:`\sum_i \ell_i`: the loss whose gradient the step applies. Under gradient
accumulation with ``(loss / N).backward()`` per micro-batch (nanoGPT) that is the mean
over the step's micro-batches, not the last micro-batch divided by N; with several
losses backpropagated one after the other (a GAN discriminator's real and fake terms)
it is their total. An optimizer that steps without a backward since the previous step
(two optimizers on one loss) gets the previous group. With a closure (LBFGS) the group
is closed when the closure's first call returns, and the closure's later calls inside
the same step are left out (``LBFGS.step`` returns that first loss too).
"""

from __future__ import annotations

import torch


class StepLosses:
    """The backpropagated losses since the last optimizer step, summed on the device."""

    def __init__(self) -> None:
        self._open: torch.Tensor | None = None
        self._count = 0
        self._closed: tuple[int, torch.Tensor] | None = None

    def add(self, loss: torch.Tensor) -> None:
        """Add a backpropagated one-element tensor to the open group (no host sync)."""
        loss = loss.detach().reshape(())
        self._open = loss if self._open is None else self._open + loss.to(self._open.device)

    def take(self) -> tuple[int, torch.Tensor] | None:
        """Close the open group if it has a loss; ``(group number, sum)`` of the last closed group."""
        if self._open is not None:
            self._count += 1
            self._closed, self._open = (self._count, self._open), None
        return self._closed


__all__ = ["StepLosses"]
