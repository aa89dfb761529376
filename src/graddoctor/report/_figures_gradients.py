"""Gradient figures: the gradient-flow heatmap and the gradient against depth."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.colors import ListedColormap
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from ._figures_common import (
    NONFINITE_COLOR,
    NONFINITE_LABEL,
    NOT_RECORDED_COLOR,
    SEQUENTIAL,
    RunLike,
    choose_steps,
    colormaps,
    fold_change,
    layer_label,
    mark_nonfinite_steps,
    new_axes,
    opened,
    sequential_colors,
    set_title,
    show_message,
    step_axis,
)
from ._figures_sampling import MAX_MARKS, bin_columns, bin_rows, column_max


def _cell_edges(steps: np.ndarray) -> np.ndarray:
    """Column edges half-way between recorded steps (uneven schedules keep their spacing)."""
    centers = steps.astype(float)
    if centers.size == 1:
        return np.array([centers[0] - 0.5, centers[0] + 0.5])
    middle = (centers[1:] + centers[:-1]) / 2
    return np.concatenate(
        (
            [centers[0] - (middle[0] - centers[0])],
            middle,
            [centers[-1] + (centers[-1] - middle[-1])],
        )
    )


def gradient_flow(
    run: RunLike, ax: Axes | None = None, *, colorbar: bool = True, max_labels: int = 40
) -> Axes:
    r"""Heatmap of :math:`\log_{10}` gradient norm, one row per layer, one column per recorded step.

    A layer's norm combines its parameters' norms in quadrature,
    :math:`\sqrt{\sum_p \|g_p\|^2}` (as ``graddoctor show``). Rows are in execution
    order with the input at the top; non-finite cells carry a red cross, cells with no
    gradient are grey, exactly-zero gradients a black ring (cells painted black when
    there are more than ``MAX_MARKS``).

    Args:
        run: a run or its path.
        ax: axes to draw on (default: a new figure).
        colorbar: add a colour bar.
        max_labels: label at most this many rows.

    Returns:
        The axes; its ``QuadMesh`` holds the plotted ``log10`` array (``[layers, steps]``;
        over ``MAX_COLUMNS`` steps, ``[layers, groups of steps]``, and over ``MAX_ROWS``
        layers, ``[groups of consecutive layers, ...]``, each group's largest).
    """
    ax = new_axes(ax, (8.0, 4.8))
    headline = "Gradient flow: gradient norm of each layer over training"
    with opened(run) as view:
        if not view.has_stat("grad_norm"):
            return show_message(ax, "no parameter gradients were recorded in this run", headline)
        steps, modules, norms, nonfinite = view.module_gradient_norms()
        types = view.types
    with np.errstate(divide="ignore", invalid="ignore"):
        logs = np.log10(norms).T  # [M, S]
    edges, cells, bad, zero = _cell_edges(steps), steps, nonfinite.T, norms.T == 0
    thinned = bin_columns(steps)
    if thinned is not None:  # a long run: each column a group of steps, its largest norm
        starts, edges = thinned
        logs = column_max(logs.T, starts).T
        bad = np.logical_or.reduceat(nonfinite, starts, axis=0).T
        zero = np.logical_or.reduceat(norms == 0, starts, axis=0).T
        cells = (edges[:-1] + edges[1:]) / 2
    rows = np.arange(len(modules) + 1, dtype=float)
    grouped = bin_rows(len(modules))
    if grouped is not None:  # a deep model: each row a group of layers, its largest norm
        row_starts, rows = grouped
        logs = column_max(logs, row_starts)
        bad = np.logical_or.reduceat(bad, row_starts, axis=0)
        zero = np.logical_or.reduceat(zero, row_starts, axis=0)
    row_centers = (rows[:-1] + rows[1:]) / 2
    image = np.ma.masked_invalid(logs)
    finite = logs[np.isfinite(logs)]
    low, high = (float(finite.min()), float(finite.max())) if finite.size else (-1.0, 0.0)
    if high - low < 1e-9:
        low, high = low - 0.5, high + 0.5
    cmap = colormaps[SEQUENTIAL].with_extremes(bad=NOT_RECORDED_COLOR)
    mesh = ax.pcolormesh(edges, rows, image, cmap=cmap, vmin=low, vmax=high, rasterized=True)
    handles: list = []
    bad_rows, bad_cols = np.nonzero(bad)
    if bad_rows.size:
        ax.scatter(
            cells[bad_cols],
            row_centers[bad_rows],
            marker="x",
            s=30,
            linewidths=1.8,
            color=NONFINITE_COLOR,
            label=NONFINITE_LABEL,
            zorder=3,
        )
        handles.append(
            Line2D(
                [], [], color=NONFINITE_COLOR, marker="x", linestyle="none", label=NONFINITE_LABEL
            )
        )
    zero_rows, zero_cols = np.nonzero(zero)
    if zero_rows.size > MAX_MARKS:  # rings would bury the map: the cells are painted black
        ax.pcolormesh(
            edges,
            rows,
            np.ma.masked_where(~zero, np.zeros(zero.shape)),
            cmap=ListedColormap(["black"]),
            rasterized=True,
            label="zero gradient",
        )
        handles.append(Patch(facecolor="black", label="zero gradient"))
    elif zero_rows.size:
        ax.scatter(
            cells[zero_cols],
            row_centers[zero_rows],
            marker="o",
            s=18,
            facecolors="none",
            edgecolors="black",
            label="zero gradient",
            zorder=3,
        )
        handles.append(
            Line2D(
                [],
                [],
                color="black",
                marker="o",
                markerfacecolor="none",
                linestyle="none",
                label="zero gradient",
            )
        )
    if np.any(np.isnan(norms) & ~nonfinite):
        handles.append(Patch(facecolor=NOT_RECORDED_COLOR, label="no gradient recorded"))
    if handles:
        ax.legend(
            handles=handles,
            fontsize=7,
            loc="upper left",
            bbox_to_anchor=(0.0, -0.14),
            ncol=3,
            frameon=False,
        )
    ax.set_ylim(len(modules), 0)  # input (first executed) at the top
    every = max(1, int(np.ceil(len(modules) / max(max_labels, 1))))
    ax.set_yticks(
        np.arange(0, len(modules), every) + 0.5,
        [layer_label(m, types) for m in modules[::every]],
        fontsize=7,
    )
    ax.set_ylabel("layer (execution order, input at top)")
    step_axis(ax)
    if colorbar:
        ax.figure.colorbar(mesh, ax=ax, label=r"$\log_{10}$ gradient norm")
    set_title(ax, headline, _flow_hint(steps, norms, nonfinite))
    return ax


def _flow_hint(steps: np.ndarray, norms: np.ndarray, nonfinite: np.ndarray) -> str:
    bad_steps = steps[nonfinite.any(axis=1)]
    if bad_steps.size:
        return f"non-finite gradients (x) from step {int(bad_steps[0])}"
    healthy = np.isfinite(norms).all(axis=1)
    if not healthy.any() or norms.shape[1] < 2:
        return "dark rows have small gradients, bright rows large ones"
    last = np.nonzero(healthy)[-1][-1]
    ratio = fold_change(norms[last, 0], norms[last, -1])
    return f"dark = small gradient; at step {int(steps[last])} the input-side layer gets {ratio} the output side's"


def grad_vs_depth(
    run: RunLike, ax: Axes | None = None, *, steps: Sequence[int] | int | None = None
) -> Axes:
    r"""Back-propagated gradient norm :math:`\|\partial L / \partial a_l\|` against depth, at chosen steps.

    The picture of Glorot & Bengio (2010): with saturating units and a naive
    initialisation the gradient shrinks layer by layer toward the input. Uses the
    modules' ``out_grad_norm``; when that was not recorded (no activation steps) it
    falls back to each layer's parameter gradient norm, and says so on the y axis.

    Args:
        run: a run or its path.
        ax: axes to draw on (default: a new figure).
        steps: the steps to draw (default: the first, middle and last recorded).

    Returns:
        The axes, one line per step; x = position in execution order (0 = input side).
    """
    ax = new_axes(ax)
    headline = "Gradient norm vs depth (Glorot & Bengio 2010)"
    with opened(run) as view:
        if view.has_stat("out_grad_norm"):
            recorded, names, values = view.series("out_grad_norm")
            _, _, ran = view.series("act_nonfinite")
            keep = ~np.all(np.isnan(values) & np.isnan(ran), axis=0)
            order = view.ordered([n for n, k in zip(names, keep, strict=True) if k])
            column = {name: j for j, name in enumerate(names)}
            index = [column[n] for n in order]
            values = values[:, index]
            nonfinite = ~np.isfinite(values) & ~np.isnan(ran[:, index])
            ylabel = r"back-propagated gradient norm $\|\partial L/\partial a\|$"
        elif view.has_stat("grad_norm"):
            recorded, order, values, nonfinite = view.module_gradient_norms()
            ylabel = "parameter gradient norm per layer\n(out_grad_norm not recorded)"
        else:
            return show_message(ax, "no gradients were recorded in this run", headline)
        types = view.types
    chosen = choose_steps(recorded, steps)
    depth = np.arange(len(order))
    hint = ""
    for step, color in zip(chosen, sequential_colors(len(chosen)), strict=True):
        row = int(np.nonzero(recorded == step)[0][0])
        ax.plot(depth, values[row], marker="o", markersize=4, color=color, label=f"step {step}")
        bad = np.nonzero(nonfinite[row])[0]
        mark_nonfinite_steps(ax, depth[bad], f"{NONFINITE_LABEL}, step {step}")
        hint = _depth_hint(step, values[row]) or hint
    ax.set_yscale("log")
    ax.set_xlabel("depth: module position in execution order (0 = input side)")
    ax.set_ylabel(ylabel)
    if len(order) <= 30:
        ax.set_xticks(
            depth, [layer_label(n, types) for n in order], rotation=45, ha="right", fontsize=7
        )
    ax.legend(fontsize=7, loc="best")
    ax.grid(True, which="major", alpha=0.3)
    set_title(ax, headline, hint)
    return ax


def _depth_hint(step: int, row: np.ndarray) -> str:
    finite = row[np.isfinite(row) & (row > 0)]
    if finite.size < 2:
        return ""
    ratio = finite[0] / finite[-1]
    if ratio < 0.1:
        trend = "vanishes toward the input"
    elif ratio > 10:
        trend = "grows toward the input (exploding)"
    else:
        trend = "stays within 10x across depth"
    return f"at step {step} the gradient {trend}: input side = {ratio:.2g}x output side"
