"""Statistics stacked on the device: the named :class:`StatBlock` and the ``"ratio"`` statistic.

The statistics themselves are declared in :mod:`graddoctor.probes.statistics`; a block's
rows are addressed by those names.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def ratio(numerator: torch.Tensor, denominator: torch.Tensor) -> torch.Tensor:
    r"""A ``"ratio"`` statistic, e.g. :math:`\|\Delta w\|_2 / \|w\|_2`: NaN where the denominator is 0."""
    return torch.where(
        denominator > 0, numerator / denominator, torch.full_like(numerator, float("nan"))
    )


class StatBlock:
    """Statistics stacked as one ``[n_stats, n]`` tensor, rows addressed by name.

    Args:
        names: the statistic of each row.
        values: the ``[len(names), n]`` tensor (rows are views: ``block["grad_norm"] /= s``
            changes ``values`` in place).
    """

    def __init__(self, names: Sequence[str], values: torch.Tensor) -> None:
        self.names = tuple(names)
        if values.dim() != 2 or values.shape[0] != len(self.names):
            raise ValueError(
                f"a block of {len(self.names)} statistics needs a 2-d tensor of as many rows, "
                f"got shape {tuple(values.shape)}"
            )
        self.values = values
        self._rows = {name: i for i, name in enumerate(self.names)}

    @classmethod
    def from_rows(cls, rows: dict[str, torch.Tensor]) -> StatBlock:
        """Stack named ``[n]`` rows, in the dict's order."""
        return cls(list(rows), torch.stack(list(rows.values())))

    @classmethod
    def filled(cls, names: Sequence[str], n: int, value: float, device: torch.device) -> StatBlock:
        """``len(names)`` rows of ``n`` copies of ``value`` (float32)."""
        return cls(names, torch.full((len(names), n), value, device=device))

    def __getitem__(self, name: str) -> torch.Tensor:
        return self.values[self._rows[name]]

    def __setitem__(self, name: str, row: torch.Tensor) -> None:
        self.values[self._rows[name]] = row

    def __contains__(self, name: object) -> bool:
        return name in self._rows

    def __len__(self) -> int:
        return len(self.names)

    def rows(self) -> dict[str, torch.Tensor]:
        """Every row by name, in block order."""
        return {name: self.values[i] for i, name in enumerate(self.names)}

    def cat(self, other: StatBlock) -> StatBlock:
        """This block's rows followed by ``other``'s (same columns, no name twice)."""
        clash = set(self.names) & set(other.names)
        if clash:
            raise ValueError(f"statistics {sorted(clash)} are in both blocks")
        return StatBlock(self.names + other.names, torch.cat([self.values, other.values]))

    def __repr__(self) -> str:
        return f"StatBlock({list(self.names)}, n={self.values.shape[1]})"


__all__ = ["StatBlock", "ratio"]
