"""Per-layer figures over training: weight norms and update ratios, activations, saturation."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import NullLocator

from ._figures_common import (
    ACTIVATION_TYPES,
    LEGEND_LIMIT,
    RunLike,
    depth_colorbar,
    execution_ordered,
    has_stat,
    layer_key,
    layer_label,
    log_scale_if_wide,
    mark_nonfinite_steps,
    module_quadrature,
    module_types,
    new_axes,
    opened,
    parameter_groups,
    select_names,
    sequential_colors,
    set_title,
    show_message,
    step_axis,
)

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
            raise ValueError("weights() draws two panels on a new figure; to draw on ax, pass stat='weight_norm' "
                             "or stat='update_ratio'")
        figure = Figure(figsize=(11.0, 4.2), layout="constrained")
        first, second = figure.subplots(1, 2)
        weights(run, first, stat="weight_norm")
        weights(run, second, stat="update_ratio")
        return first
    ax = new_axes(ax)
    with opened(run) as reader:
        if not has_stat(reader, "weight_norm"):
            return show_message(ax, "no parameter statistics were recorded in this run", "Weights")
        steps, params, weight = reader.series("weight_norm")
        _, _, update = reader.series("update_norm")
        groups = parameter_groups(reader, params)
        types = module_types(reader)
    weight_norm = module_quadrature(weight, groups)
    bad_weight = ~np.isfinite(weight_norm).all(axis=1)
    labels = [layer_label(m, types) for m in groups]
    colors = sequential_colors(len(groups))
    if stat == "weight_norm":
        for j in range(len(groups)):
            ax.plot(steps, weight_norm[:, j], color=colors[j], label=labels[j])
        mark_nonfinite_steps(ax, steps[bad_weight], "non-finite weights")
        log_scale_if_wide(ax, weight_norm)
        ax.set_ylabel(r"weight norm $\|W\|$")
        set_title(ax, "Weight norm per layer", "steady growth = weights blowing up; a jump = an exploding step")
    else:
        update_norm = module_quadrature(update, groups)
        if np.all(np.isnan(update_norm)):
            return show_message(ax, "updates were not recorded: they need an optimizer and track_updates=True",
                                "Update ratio")
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = update_norm / weight_norm
        for j in range(len(groups)):
            ax.plot(steps, ratio[:, j], color=colors[j], label=labels[j])
        ax.axhline(UPDATE_RATIO_RULE, color="black", linestyle="--", linewidth=1, label="1e-3 rule of thumb")
        recorded = ~np.all(np.isnan(update_norm), axis=1)
        bad_ratio = bad_weight | (recorded & ~np.isfinite(ratio).all(axis=1))
        mark_nonfinite_steps(ax, steps[bad_ratio], "non-finite update")
        ax.set_yscale("log")
        ax.set_ylabel(r"update ratio $\|\Delta W\| / \|W\|$")
        set_title(ax, "Update ratio per layer", _ratio_hint(steps, ratio, list(groups)))
    step_axis(ax)
    ax.grid(True, alpha=0.3)
    layer_key(ax, labels, colors)
    return ax


def _ratio_hint(steps: np.ndarray, ratio: np.ndarray, modules: list[str]) -> str:
    finite_rows = np.nonzero(np.isfinite(ratio).any(axis=1))[0]
    if finite_rows.size == 0:
        return "around 1e-3 is healthy"
    last = ratio[finite_rows[-1]]
    high = [m for m, r in zip(modules, last, strict=True) if np.isfinite(r) and r > 10 * UPDATE_RATIO_RULE]
    low = [m for m, r in zip(modules, last, strict=True) if np.isfinite(r) and r < UPDATE_RATIO_RULE / 10]
    parts = []
    if high:
        parts.append(f"{len(high)} layer(s) above 1e-2 (step too large)")
    if low:
        parts.append(f"{len(low)} below 1e-4 (barely learning)")
    where = f"at step {int(steps[finite_rows[-1]])}: "
    return where + ("; ".join(parts) if parts else "every layer within 10x of 1e-3")


def _activation_columns(
    reader, names: list[str], modules: str | Sequence[str] | None
) -> tuple[list[str], str]:
    """The modules to draw, in execution order, and a note on how they were chosen."""
    types = module_types(reader)
    if modules is not None:
        return execution_ordered(reader, select_names(names, modules)), ""
    chosen = [n for n in names if types.get(n) in ACTIVATION_TYPES]
    if chosen:
        return execution_ordered(reader, chosen), ""
    return execution_ordered(reader, names), " (no activation modules: every module shown)"


def activations(run: RunLike, ax: Axes | None = None, *, modules: str | Sequence[str] | None = None) -> Axes:
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
    with opened(run) as reader:
        if not has_stat(reader, "act_mean"):
            return show_message(ax, "no activation statistics were recorded (activations_every=None?)", headline)
        steps, names, mean = reader.series("act_mean")
        _, _, std = reader.series("act_std")
        _, _, nonfinite = reader.series("act_nonfinite")
        chosen, note = _activation_columns(reader, names, modules)
        types = module_types(reader)
    chosen = [n for n in chosen if not np.all(np.isnan(nonfinite[:, names.index(n)]))]
    if not chosen:
        return show_message(ax, "the chosen modules never ran on a recorded step", headline)
    labels = [layer_label(n, types) for n in chosen]
    colors = sequential_colors(len(chosen))
    bad = np.zeros(steps.size, dtype=bool)
    for name, label, color in zip(chosen, labels, colors, strict=True):
        j = names.index(name)
        ax.plot(steps, mean[:, j], color=color, label=label, marker="o", markersize=2)
        ax.fill_between(steps, mean[:, j] - std[:, j], mean[:, j] + std[:, j], color=color, alpha=0.12, linewidth=0)
        with np.errstate(invalid="ignore"):
            bad |= (nonfinite[:, j] > 0) | (~np.isnan(nonfinite[:, j]) & ~np.isfinite(mean[:, j]))
    mark_nonfinite_steps(ax, steps[bad], "non-finite activations")
    columns = [names.index(n) for n in chosen]
    edges = np.abs(np.concatenate([mean[:, columns] - std[:, columns], mean[:, columns] + std[:, columns]]))
    edges = edges[np.isfinite(edges) & (edges > 0)]
    if edges.size and edges.max() > 1e3 * np.median(edges):  # exploding activations: keep the start visible
        _symlog_axis(ax, float(np.median(edges)), float(edges.max()))
    step_axis(ax)
    ax.set_ylabel("activation value (mean, band = +-1 std)")
    ax.grid(True, alpha=0.3)
    layer_key(ax, labels, colors)
    set_title(ax, headline + note, "a mean pinned at a bound with a thin band = saturated units (Glorot & Bengio 2010)")
    return ax


def _symlog_axis(ax: Axes, typical: float, largest: float) -> None:
    """A symmetric log y axis, linear up to ``typical``, with at most 4 decade ticks per sign."""
    low, high = int(np.floor(np.log10(typical))), int(np.ceil(np.log10(largest)))
    ax.set_yscale("symlog", linthresh=10.0**low, linscale=1.0)
    every = max(1, int(np.ceil((high - low) / 4)))
    decades = 10.0 ** np.arange(low + every, high + 1, every)  # none next to 0, where labels would collide
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
    with opened(run) as reader:
        if not has_stat(reader, "act_saturated"):
            return show_message(ax, "no activation statistics were recorded (activations_every=None?)", headline)
        steps, names, saturated = reader.series("act_saturated")
        _, _, dead = reader.series("act_dead")
        _, _, nonfinite = reader.series("act_nonfinite")
        order = execution_ordered(reader, names)
        types = module_types(reader)
    lines = []
    for name in order:
        j = names.index(name)
        for values, kind, style in ((saturated, "saturated", "-"), (dead, "dead", "--")):
            if not np.all(np.isnan(values[:, j])):
                lines.append((name, j, values, kind, style))
    if not lines:
        return show_message(ax, "no bounded (tanh, sigmoid...) or ReLU-family module was recorded", headline)
    modules = list(dict.fromkeys(name for name, *_ in lines))
    colors = dict(zip(modules, sequential_colors(len(modules)), strict=True))
    worst = (0.0, "")
    for name, j, values, kind, style in lines:
        ax.plot(steps, values[:, j], linestyle=style, color=colors[name], label=f"{layer_label(name, types)} {kind}")
        last = values[:, j][np.isfinite(values[:, j])]
        if last.size and last[-1] > worst[0]:
            worst = (float(last[-1]), f"{last[-1]:.0%} of {name!r} {kind} at the last recorded step")
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
        styles = [Line2D([], [], color="gray", linestyle=s, label=k) for k, s in (("saturated", "-"), ("dead", "--"))]
        ax.legend(handles=styles + ([mark] if mark is not None else []), fontsize=7, loc="best")
    hint = worst[1] if worst[0] > 0 else "no saturated or dead units at the last recorded step"
    set_title(ax, headline + ": rising lines = units that stop passing gradient", hint)
    return ax
