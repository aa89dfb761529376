r"""Per-module norms from per-parameter norms: the one quadrature sum of the read side.

A module's norm (gradient, weight or update) combines its parameters' norms in quadrature,

.. math::
    \|g_{\text{module}}\| = \sqrt{\textstyle\sum_{p \in \text{module}} \|g_p\|^2},

which is the norm of the module's parameters flattened into one vector.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def owner_module(param_name: str) -> str:
    """``"encoder.0.weight"`` -> ``"encoder.0"`` (the root model is ``""``)."""
    return param_name.rpartition(".")[0]


def group_by_owner(param_names: Sequence[str]) -> dict[str, list[int]]:
    """Module -> the column indices of its parameters, modules in order of first appearance."""
    groups: dict[str, list[int]] = {}
    for column, param in enumerate(param_names):
        groups.setdefault(owner_module(param), []).append(column)
    return groups


def module_quadrature(
    values: np.ndarray, groups: dict[str, list[int]], measured: np.ndarray | None = None
) -> np.ndarray:
    r"""Combine per-parameter norms into per-module norms, ``[S, P] -> [S, M]``.

    .. math::
        \|g_{\text{module}}\| = \sqrt{\textstyle\sum_{p \in \text{module}} \|g_p\|^2}

    Args:
        values: per-parameter norms over steps, ``[S, P]``.
        groups: module -> parameter columns (see :func:`group_by_owner`); the output
            columns follow its order.
        measured: ``[S, P]`` bool, the cells that were measured; the others are left
            out of the sum. Default: every cell. A module with no measured cell is NaN;
            a measured NaN or Inf propagates.

    Returns:
        ``[S, len(groups)]`` float64.
    """
    values = np.asarray(values, dtype=np.float64)
    if measured is None:
        measured = np.ones(values.shape, dtype=bool)
    with np.errstate(over="ignore"):
        squares = np.where(measured, np.square(values), 0.0)
    out = np.full((values.shape[0], len(groups)), np.nan)
    for j, columns in enumerate(groups.values()):
        any_measured = measured[:, columns].any(axis=1)
        out[any_measured, j] = np.sqrt(squares[any_measured][:, columns].sum(axis=1))
    return out
