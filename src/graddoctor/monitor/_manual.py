"""Manual steps: a Monitor without an optimizer, stepped by the loop or a framework callback.

Without an optimizer to hook, the caller marks the step: ``step()`` after ``backward()``
(gradients and weights at once, no update), or ``before_step()`` where the gradients are
final (a callback before the framework clips them) and ``after_step()`` once the
optimizer has stepped (weights and update). A clip call of the loop measures the step's
gradients first when it comes before them (``monitor.clip_watch``).
"""

from __future__ import annotations

from typing import Any


class ManualSteps:
    """The manual-step methods of :class:`~graddoctor.Monitor` (which provides the state)."""

    optimizer: Any
    probes: Any
    step_index: int
    _track_updates: bool

    def step(self) -> None:
        """Record the current gradients as one step (for training loops without an optimizer)."""
        self._check_manual()
        self.probes.before_update(self.step_index)
        self._finish_step()

    def before_step(self) -> None:
        """Measure gradients and snapshot weights now (manual mode, e.g. a framework callback
        that sees unscaled, unclipped gradients before its own clipping)."""
        self._check_manual()
        self.probes.params.track_updates = self._track_updates
        self.probes.before_update(self.step_index)

    def after_step(self) -> None:
        """Measure weights and updates after the optimizer step and close the step (manual mode)."""
        self._check_manual()
        self._finish_step()

    def _check_manual(self) -> None:
        self._check_open()
        if self.optimizer is not None:
            raise RuntimeError(
                "this Monitor follows optimizer.step() through hooks: to call step(), before_step() or "
                "after_step() yourself, create it without an optimizer"
            )

    def _check_open(self) -> None:
        raise NotImplementedError

    def _finish_step(self, skipped: bool = False) -> None:
        raise NotImplementedError


__all__ = ["ManualSteps"]
