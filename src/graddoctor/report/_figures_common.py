"""Shared pieces of the figures: opening runs as views, colours, legends and non-finite marks.

Figures are drawn on ``matplotlib.figure.Figure`` objects, never through pyplot, so no
GUI backend is chosen and no global matplotlib state changes.
"""

from __future__ import annotations

import contextlib
import fnmatch
import os
from collections.abc import Iterator, Sequence

import numpy as np

try:
    from matplotlib import colormaps
    from matplotlib.axes import Axes
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator
    from matplotlib.transforms import blended_transform_factory
except ImportError as err:  # pragma: no cover - matplotlib is a dependency of the report
    raise ImportError("graddoctor figures need matplotlib: pip install matplotlib") from err

from ..store import Run, open_run
from ..views import RunView

RunLike = RunView | Run | str | os.PathLike
# Okabe & Ito (2008) colour-blind-safe qualitative palette, black left out.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")
NONFINITE_COLOR = "#D55E00"  # vermillion: NaN / Inf marks
NOT_RECORDED_COLOR = "#DDDDDD"
SEQUENTIAL = "viridis"
NONFINITE_LABEL = "non-finite (NaN/Inf)"
LEGEND_LIMIT = 12  # more layers than this get a colour bar instead of a legend


@contextlib.contextmanager
def opened(run: RunLike) -> Iterator[RunView]:
    """The view of a run: ``run`` itself when it is a view, else a view of the run (opened
    from a path if needed, and closed again if it was opened here)."""
    if isinstance(run, RunView):
        yield run
        return
    if not isinstance(run, (Run, str, os.PathLike)):
        raise TypeError(
            f"a figure needs a Run or the path of a .gdr run file, got {type(run).__name__}"
        )
    reader = open_run(run)
    try:
        yield RunView(reader)
    finally:
        if reader is not run:
            reader.close()


def new_axes(ax: Axes | None, figsize: tuple[float, float] = (7.5, 4.5)) -> Axes:
    """``ax`` itself, or the axes of a new constrained-layout Figure (no pyplot)."""
    if ax is not None:
        if not isinstance(ax, Axes):
            raise TypeError(f"ax must be a matplotlib Axes or None, got {type(ax).__name__}")
        return ax
    return Figure(figsize=figsize, layout="constrained").add_subplot()


def set_title(ax: Axes, headline: str, hint: str = "") -> None:
    """A headline and, under it, one line telling the reader what to see."""
    ax.set_title(headline + (f"\n{hint}" if hint else ""), fontsize=10, loc="left")


def step_axis(ax: Axes) -> None:
    """Label the x axis as training steps, with integer ticks."""
    ax.set_xlabel("training step")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def show_message(ax: Axes, text: str, headline: str = "") -> Axes:
    """Write ``text`` in the middle of the axes (for a figure that has nothing to draw)."""
    ax.text(
        0.5, 0.5, text, ha="center", va="center", wrap=True, transform=ax.transAxes, fontsize=10
    )
    ax.set_xticks([])
    ax.set_yticks([])
    if headline:
        set_title(ax, headline)
    return ax


def layer_label(name: str, types: dict[str, str]) -> str:
    """``"3 (ReLU)"``; the root module is ``"(model)"``."""
    kind = types.get(name)
    shown = name if name else "(model)"
    return f"{shown} ({kind})" if kind else shown


def select_names(names: Sequence[str], patterns: str | Sequence[str]) -> list[str]:
    """Names matching ``"all"`` or glob patterns; ValueError naming a pattern that matches none."""
    if patterns == "all":
        return list(names)
    if isinstance(patterns, str):
        patterns = [patterns]
    for pattern in patterns:
        if not any(fnmatch.fnmatchcase(n, pattern) for n in names):
            raise ValueError(
                f"modules={pattern!r} matches no recorded module; recorded: {list(names)}"
            )
    return [n for n in names if any(fnmatch.fnmatchcase(n, p) for p in patterns)]


def choose_steps(recorded: np.ndarray, steps: Sequence[int] | int | None) -> list[int]:
    """The requested steps, each checked against ``recorded``; default first, middle, last."""
    if recorded.size == 0:
        raise ValueError("no steps were recorded")
    if steps is None:
        picks = [recorded[0], recorded[(recorded.size - 1) // 2], recorded[-1]]
        return sorted({int(s) for s in picks})
    if isinstance(steps, (int, np.integer)):
        steps = [int(steps)]
    chosen = []
    for step in steps:
        if int(step) not in set(recorded.tolist()):
            nearest = recorded[np.argsort(np.abs(recorded - int(step)))[:3]]
            raise ValueError(
                f"step {step} was not recorded; nearest recorded steps: {sorted(nearest.tolist())}"
            )
        chosen.append(int(step))
    return chosen


def sequential_colors(count: int, cmap: str = SEQUENTIAL) -> list[tuple[float, ...]]:
    """``count`` colours along viridis (its pale end left out, to stay visible on white)."""
    colormap = colormaps[cmap]
    return [colormap(v) for v in np.linspace(0.0, 0.85, max(count, 1))][:count]


def layer_key(
    ax: Axes, labels: Sequence[str], colors: Sequence, title: str = "layer (input first)"
) -> None:
    """A legend for a few layers, or a depth colour bar for many."""
    if not labels:
        return
    if len(labels) <= LEGEND_LIMIT:
        ax.legend(fontsize=7, title=title, title_fontsize=7, loc="best")
        return
    depth_colorbar(ax, labels)
    others = [
        (h, t) for h, t in zip(*ax.get_legend_handles_labels(), strict=True) if t not in set(labels)
    ]
    if others:
        ax.legend(*zip(*others, strict=True), fontsize=7, loc="best")


def depth_colorbar(ax: Axes, labels: Sequence[str]) -> None:
    """A colour bar keying :func:`sequential_colors` to layer depth, first and last layer named."""
    colormap = colormaps[SEQUENTIAL].resampled(256)
    mappable = ScalarMappable(
        Normalize(0, max(len(labels) - 1, 1) / 0.85), colormap
    )  # as sequential_colors
    bar = ax.figure.colorbar(mappable, ax=ax, label="layer (execution order)")
    bar.ax.set_ylim(0, max(len(labels) - 1, 1))
    bar.set_ticks([0, len(labels) - 1], labels=[labels[0], labels[-1]])


def mark_nonfinite_steps(
    ax: Axes, steps: Sequence[float], label: str = NONFINITE_LABEL, color: str = NONFINITE_COLOR
):
    """Red crosses along the top edge of the axes at ``steps`` (values that cannot be drawn)."""
    if len(steps) == 0:
        return None
    transform = blended_transform_factory(ax.transData, ax.transAxes)
    (line,) = ax.plot(
        np.asarray(steps, dtype=float),
        np.full(len(steps), 0.97),
        transform=transform,
        linestyle="none",
        marker="x",
        markersize=8,
        markeredgewidth=2,
        color=color,
        label=label,
        clip_on=False,
        zorder=5,
    )
    return line


def log_scale_if_wide(ax: Axes, values: np.ndarray, decades: float = 2.0) -> bool:
    """Use a log y axis when the finite positive values span more than ``decades``."""
    finite = values[np.isfinite(values)]
    if finite.size == 0 or np.any(finite <= 0):
        return False
    if np.log10(finite.max() / finite.min()) > decades:
        ax.set_yscale("log")
        return True
    return False


def fold_change(first: float, last: float) -> str:
    """``"1e-05x"`` style ratio text, or ``""`` when it cannot be computed."""
    if not (np.isfinite(first) and np.isfinite(last)) or last == 0:
        return ""
    return f"{first / last:.2g}x"
