"""Weight figures: the weight norm and update ratio of each layer over training."""

from __future__ import annotations

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from ..views import RunView
from ._figures_common import (
    RunLike,
    layer_key,
    layer_label,
    log_scale_if_wide,
    mark_nonfinite_steps,
    new_axes,
    opened,
    sequential_colors,
    set_title,
    show_message,
    step_axis,
)
from ._figures_sampling import envelope, shown_note, spread

UPDATE_RATIO_RULE = 1e-3
WEIGHT_PANELS = ("weight_norm", "update_ratio")


def weights(run: RunLike, ax: Axes | None = None, *, stat: str | None = None) -> Axes:
    r"""Weight norm and update ratio of each layer over training.

    The update ratio is :math:`\|\Delta W\| / \|W\|` of the layer (its parameters'
    norms combined in quadrature); the dashed line marks the rule of thumb
    :math:`10^{-3}`: far above it the learning rate is too large for that layer, far
    below it the layer hardly learns.

    Args:
        run: a run or its path.
        ax: axes to draw on. With ``ax=None`` and ``stat=None`` a new figure gets two
            panels (weight norm, update ratio) and the first is returned (the second is
            ``ax.figure.axes[1]``); to draw on your own axes pass ``stat``.
        stat: ``"weight_norm"`` or ``"update_ratio"`` for one panel.

    Returns:
        The (first) axes; one line per layer, in execution order.
    """
    if stat is not None and stat not in WEIGHT_PANELS:
        raise ValueError(f"stat must be one of {WEIGHT_PANELS} or None, got {stat!r}")
    if stat is None:
        if ax is not None:
            raise ValueError(
                "weights() draws two panels on a new figure; to draw on ax, pass stat='weight_norm' "
                "or stat='update_ratio'"
            )
        figure = Figure(figsize=(11.0, 4.2), layout="constrained")
        first, second = figure.subplots(1, 2)
        with opened(run) as view:  # both panels read the norms once
            read = _norms(view)
        _panel(first, "weight_norm", read)
        _panel(second, "update_ratio", read)
        return first
    ax = new_axes(ax)
    with opened(run) as view:
        read = _norms(view)
    return _panel(ax, stat, read)


def _norms(view: RunView) -> tuple | None:
    """Steps, modules, per-module weight and update norms and module types; None without weights."""
    if not view.has_stat("weight_norm"):
        return None
    steps, modules, weight_norm = view.module_norms("weight_norm")
    _, _, update_norm = view.module_norms("update_norm")
    return steps, modules, weight_norm, update_norm, view.types


def _panel(ax: Axes, stat: str, read: tuple | None) -> Axes:
    """One panel of :func:`weights` (``stat``: weight norm or update ratio)."""
    if read is None:
        return show_message(ax, "no parameter statistics were recorded in this run", "Weights")
    steps, modules, weight_norm, update_norm, types = read
    bad_weight = ~np.isfinite(weight_norm).all(axis=1)
    drawn = spread(len(modules))
    labels = [layer_label(modules[j], types) for j in drawn]
    colors = sequential_colors(len(drawn))
    note = shown_note(len(drawn), len(modules))
    if stat == "weight_norm":
        for k, j in enumerate(drawn):
            ax.plot(*envelope(steps, weight_norm[:, j]), color=colors[k], label=labels[k])
        mark_nonfinite_steps(ax, steps[bad_weight], "non-finite weights")
        log_scale_if_wide(ax, weight_norm)
        ax.set_ylabel(r"weight norm $\|W\|$")
        set_title(
            ax,
            "Weight norm per layer",
            "steady growth = weights blowing up; a jump = an exploding step" + note,
        )
    else:
        if np.all(np.isnan(update_norm)):
            return show_message(
                ax,
                "updates were not recorded: they need an optimizer and track_updates=True",
                "Update ratio",
            )
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = update_norm / weight_norm
        for k, j in enumerate(drawn):
            ax.plot(*envelope(steps, ratio[:, j]), color=colors[k], label=labels[k])
        ax.axhline(
            UPDATE_RATIO_RULE,
            color="black",
            linestyle="--",
            linewidth=1,
            label="1e-3 rule of thumb",
        )
        recorded = ~np.all(np.isnan(update_norm), axis=1)
        bad_ratio = bad_weight | (recorded & ~np.isfinite(ratio).all(axis=1))
        mark_nonfinite_steps(ax, steps[bad_ratio], "non-finite update")
        ax.set_yscale("log")
        ax.set_ylabel(r"update ratio $\|\Delta W\| / \|W\|$")
        set_title(ax, "Update ratio per layer", _ratio_hint(steps, ratio, modules) + note)
    step_axis(ax)
    ax.grid(True, alpha=0.3)
    layer_key(ax, labels, colors)
    return ax


def _ratio_hint(steps: np.ndarray, ratio: np.ndarray, modules: list[str]) -> str:
    finite_rows = np.nonzero(np.isfinite(ratio).any(axis=1))[0]
    if finite_rows.size == 0:
        return "around 1e-3 is healthy"
    last = ratio[finite_rows[-1]]
    high = [
        m
        for m, r in zip(modules, last, strict=True)
        if np.isfinite(r) and r > 10 * UPDATE_RATIO_RULE
    ]
    low = [
        m
        for m, r in zip(modules, last, strict=True)
        if np.isfinite(r) and r < UPDATE_RATIO_RULE / 10
    ]
    parts = []
    if high:
        parts.append(f"{len(high)} layer(s) above 1e-2 (step too large)")
    if low:
        parts.append(f"{len(low)} below 1e-4 (barely learning)")
    where = f"at step {int(steps[finite_rows[-1]])}: "
    return where + ("; ".join(parts) if parts else "every layer within 10x of 1e-3")
