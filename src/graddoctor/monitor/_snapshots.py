"""The Guard's good states: model and optimizer state dicts kept on a schedule, in memory or on disk.

A snapshot is the state *before* step ``step`` (after ``step`` updates). In memory the
tensors are cloned on their device (fast; doubles the model's and the optimizer's
memory); with a folder each snapshot is a ``torch.save`` file there, loaded back to the
parameters' devices on restore (for models too large to copy in memory).
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn


class Snapshots:
    """The last ``kept`` good states of a model and its optimizer.

    Args:
        model: the model (its ``state_dict``: buffers too).
        optimizer: the optimizer (its state and param groups).
        kept: how many snapshots to keep (the oldest is dropped).
        folder: where to save them (None: in memory).
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        kept: int = 2,
        folder: str | os.PathLike | None = None,
    ) -> None:
        self.model = model
        self.optimizer = optimizer
        self.kept = kept
        self.folder = Path(folder) if folder is not None else None
        if self.folder is not None:
            self.folder.mkdir(parents=True, exist_ok=True)
        self._saved: list[tuple[int, Any]] = []  # (step, state or file), oldest first

    @property
    def steps(self) -> list[int]:
        """The steps of the snapshots kept, oldest first."""
        return [step for step, _ in self._saved]

    def take(self, step: int) -> None:
        """Keep the current state as the state before ``step``."""
        state = {
            "model": {k: v.detach().clone() for k, v in self.model.state_dict().items()},
            "optimizer": copy.deepcopy(self.optimizer.state_dict()),
        }
        if self.folder is not None:
            path = self.folder / f"guard-{id(self):x}-step{step}.pt"
            torch.save(state, path)
            state = path
        self._saved.append((step, state))
        while len(self._saved) > self.kept:
            self._drop(0)

    def restore(self, before: int) -> int | None:
        """Load the newest snapshot taken at or before step ``before``, and drop the newer ones.

        Returns:
            the step of the snapshot restored (None: there was none that old).
        """
        older = [i for i, (step, _) in enumerate(self._saved) if step <= before]
        if not older:
            return None
        index = older[-1]
        while len(self._saved) > index + 1:
            self._drop(index + 1)
        step, state = self._saved[index]
        if isinstance(state, Path):
            state = torch.load(state, map_location="cpu", weights_only=True)
        self.model.load_state_dict(state["model"])
        # a deep copy: the optimizer may keep the loaded tensors and update them in place
        self.optimizer.load_state_dict(copy.deepcopy(state["optimizer"]))
        return step

    def _drop(self, index: int) -> None:
        _, state = self._saved.pop(index)
        if isinstance(state, Path):
            state.unlink(missing_ok=True)

    def clear(self) -> None:
        """Forget every snapshot (and delete their files)."""
        while self._saved:
            self._drop(0)


__all__ = ["Snapshots"]
