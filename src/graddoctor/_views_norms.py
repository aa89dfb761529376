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
    kept = [j for j, columns in enumerate(groups.values()) if columns]  # an empty group is NaN
    if not kept or values.shape[0] == 0:
        return out
    nonempty = {name: columns for name, columns in groups.items() if columns}
    sums = reduce_groups(np.add, squares, nonempty)
    any_measured = reduce_groups(np.logical_or, measured, nonempty)
    out[:, kept] = np.where(any_measured, np.sqrt(sums), np.nan)
    return out


def reduce_groups(ufunc: np.ufunc, values: np.ndarray, groups: dict[str, list[int]]) -> np.ndarray:
    """``ufunc`` reduced over each group's columns, ``[S, P] -> [S, len(groups)]``, in one pass.

    Args:
        ufunc: a binary ufunc (``np.add``, ``np.logical_or``, ``np.fmax``...).
        values: ``[S, P]``.
        groups: name -> columns, none of them empty; the output follows its order.
    """
    columns = [c for cols in groups.values() for c in cols]
    starts = np.cumsum([0] + [len(cols) for cols in groups.values()])[:-1]
    return ufunc.reduceat(values[:, columns], starts, axis=1)
