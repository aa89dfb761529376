"""Activation figures: mean and spread of each activation layer, saturated and dead units."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.lines import Line2D
from matplotlib.ticker import NullLocator

from .._modules import NON_SATURATING, SATURATING
from ..views import RunView
from ._figures_common import (
    LEGEND_LIMIT,
    RunLike,
    depth_colorbar,
    layer_key,
    layer_label,
    mark_nonfinite_steps,
    new_axes,
    opened,
    select_names,
    sequential_colors,
    set_title,
    show_message,
    step_axis,
)
from ._figures_sampling import envelope, envelope_index, shown_note, spread

NOT_RECORDED = "no activation statistics were recorded (activations_every=None?)"


def _module_series(
    view: RunView, stat: str, other: str
) -> tuple[np.ndarray, list[str], np.ndarray, np.ndarray, np.ndarray] | None:
    """Steps, module names, ``stat``, ``other`` and ``act_nonfinite``; None if ``stat`` was never recorded."""
    if not view.has_stat(stat):
        return None
    steps, names, values = view.series(stat)
    return steps, names, values, view.series(other)[2], view.series("act_nonfinite")[2]


def _activation_columns(
    view: RunView, names: list[str], modules: str | Sequence[str] | None
) -> tuple[list[str], str]:
    """The modules to draw, in execution order, and a note on how they were chosen."""
    if modules is not None:
        return view.ordered(select_names(names, modules)), ""
    activations = set(view.modules_in(SATURATING, names)) | set(
        view.modules_in(NON_SATURATING, names)
    )
    if activations:
        return view.ordered([n for n in names if n in activations]), ""
    return view.ordered(names), " (no activation modules: every module shown)"


def activations(
    run: RunLike, ax: Axes | None = None, *, modules: str | Sequence[str] | None = None
) -> Axes:
    r"""Mean :math:`\pm` standard deviation of each activation layer's output over training.

    Glorot & Bengio (2010, fig. 2): a sigmoid layer whose mean drifts to a bound while
    its band narrows is saturated, and passes almost no gradient back.

    Args:
        run: a run or its path.
        ax: axes to draw on (default: a new figure).
        modules: ``"all"`` or glob patterns of module names; default: the modules
            whose type is an activation (every module if there is none).

    Returns:
        The axes; one line (the mean) and one band (mean +- std) per module.
    """
    ax = new_axes(ax)
    headline = "Activations per layer: mean +- std over training"
    with opened(run) as view:
        read = _module_series(view, "act_mean", "act_std")
        if read is None:
            return show_message(ax, NOT_RECORDED, headline)
        steps, names, mean, std, nonfinite = read
        chosen, note = _activation_columns(view, names, modules)
        types = view.types
    column = {name: j for j, name in enumerate(names)}
    ran = ~np.all(np.isnan(nonfinite), axis=0)
    chosen = [n for n in chosen if ran[column[n]]]
    if not chosen:
        return show_message(ax, "the chosen modules never ran on a recorded step", headline)
    drawn = [chosen[i] for i in spread(len(chosen))]
    labels = [layer_label(n, types) for n in drawn]
    colors = sequential_colors(len(drawn))
    columns = [column[n] for n in chosen]
    counts = nonfinite[:, columns]
    with np.errstate(invalid="ignore"):
        bad = ((counts > 0) | (~np.isnan(counts) & ~np.isfinite(mean[:, columns]))).any(axis=1)
    for name, label, color in zip(drawn, labels, colors, strict=True):
        j = column[name]
        low, high = mean[:, j] - std[:, j], mean[:, j] + std[:, j]
        keep = np.union1d(envelope_index(mean[:, j]), envelope_index(low))
        keep = np.union1d(keep, envelope_index(high))  # the mean's and the band's extremes
        ax.plot(steps[keep], mean[keep, j], color=color, label=label, marker="o", markersize=2)
        ax.fill_between(
            steps[keep],
            low[keep],
            high[keep],
            color=color,
            alpha=0.12,
            linewidth=0,
        )
    mark_nonfinite_steps(ax, steps[bad], "non-finite activations")
    edges = np.abs(
        np.concatenate([mean[:, columns] - std[:, columns], mean[:, columns] + std[:, columns]])
    )
    edges = edges[np.isfinite(edges) & (edges > 0)]
    if edges.size and edges.max() > 1e3 * np.median(
        edges
    ):  # exploding activations: keep the start visible
        _symlog_axis(ax, float(np.median(edges)), float(edges.max()))
    step_axis(ax)
    ax.set_ylabel("activation value (mean, band = +-1 std)")
    ax.grid(True, alpha=0.3)
    layer_key(ax, labels, colors)
    set_title(
        ax,
        headline + note,
        "a mean pinned at a bound with a thin band = saturated units (Glorot & Bengio 2010)"
        + shown_note(len(drawn), len(chosen)),
    )
    return ax


def _symlog_axis(ax: Axes, typical: float, largest: float) -> None:
    """A symmetric log y axis, linear up to ``typical``, with at most 4 decade ticks per sign."""
    low, high = int(np.floor(np.log10(typical))), int(np.ceil(np.log10(largest)))
    ax.set_yscale("symlog", linthresh=10.0**low, linscale=1.0)
    every = max(1, int(np.ceil((high - low) / 4)))
    decades = 10.0 ** np.arange(
        low + every, high + 1, every
    )  # none next to 0, where labels would collide
    ax.set_yticks(np.concatenate([-decades[::-1], [0.0], decades]))
    ax.yaxis.set_minor_locator(NullLocator())


def saturation(run: RunLike, ax: Axes | None = None) -> Axes:
    """Fractions of saturated units (bounded activations) and dead units (ReLU family) over training.

    Only modules where the fraction is measured are drawn: solid lines are saturated
    fractions (outputs within 1% of a bound of tanh, sigmoid, hardtanh...), dashed lines
    dead fractions (ReLU units that are 0 for the whole batch).

    Args:
        run: a run or its path.
        ax: axes to draw on (default: a new figure).

    Returns:
        The axes, with a message when no module measures either fraction.
    """
    ax = new_axes(ax)
    headline = "Saturated and dead units"
    with opened(run) as view:
        read = _module_series(view, "act_saturated", "act_dead")
        if read is None:
            return show_message(ax, NOT_RECORDED, headline)
        steps, names, saturated, dead, nonfinite = read
        order = view.ordered(names)
        types = view.types
    lines = []
    column = {name: j for j, name in enumerate(names)}
    for name in order:
        j = column[name]
        for values, kind, style in ((saturated, "saturated", "-"), (dead, "dead", "--")):
            if not np.all(np.isnan(values[:, j])):
                lines.append((name, j, values, kind, style))
    if not lines:
        return show_message(
            ax, "no bounded (tanh, sigmoid...) or ReLU-family module was recorded", headline
        )
    every_module = list(dict.fromkeys(name for name, *_ in lines))
    modules = [every_module[i] for i in spread(len(every_module))]
    colors = dict(zip(modules, sequential_colors(len(modules)), strict=True))
    worst = (0.0, "")
    for name, j, values, kind, style in lines:
        if name in colors:
            ax.plot(
                *envelope(steps, values[:, j]),
                linestyle=style,
                color=colors[name],
                label=f"{layer_label(name, types)} {kind}",
            )
        last = values[:, j][np.isfinite(values[:, j])]
        if last.size and last[-1] > worst[0]:
            worst = (
                float(last[-1]),
                f"{last[-1]:.0%} of {name!r} {kind} at the last recorded step",
            )
    with np.errstate(invalid="ignore"):
        bad = (nonfinite[:, [j for _, j, *_ in lines]] > 0).any(axis=1)
    mark = mark_nonfinite_steps(ax, steps[bad], "non-finite activations")
    ax.set_ylim(-0.02, 1.05)
    step_axis(ax)
    ax.set_ylabel("fraction of units (solid: saturated, dashed: dead)")
    ax.grid(True, alpha=0.3)
    if len(lines) <= LEGEND_LIMIT:
        ax.legend(fontsize=7, loc="best")
    else:
        depth_colorbar(ax, [layer_label(m, types) for m in modules])
        styles = [
            Line2D([], [], color="gray", linestyle=s, label=k)
            for k, s in (("saturated", "-"), ("dead", "--"))
        ]
        ax.legend(handles=styles + ([mark] if mark is not None else []), fontsize=7, loc="best")
    hint = worst[1] if worst[0] > 0 else "no saturated or dead units at the last recorded step"
    hint += shown_note(len(modules), len(every_module))
    set_title(ax, headline + ": rising lines = units that stop passing gradient", hint)
    return ax
