"""Figures drawn from a recorded run, never from live hooks.

Each figure is a function ``(run, ax=None, **options) -> Axes``: ``run`` is a
:class:`graddoctor.Run` or the path of a ``.gdr`` file; without ``ax`` the figure is
drawn on a new ``matplotlib.figure.Figure`` (pyplot is never used, so nothing global
in matplotlib changes and no GUI backend is needed). ``FIGURES`` maps the stable kind
names to the functions; :func:`save_figure` renders one kind to PNG or SVG and
:func:`figure_to_data_uri` inlines a figure in an HTML page.

Conventions shared by every figure: layers in execution order (input side first),
viridis for depth or time, the Okabe-Ito palette for compared runs, and NaN/Inf marked
with a vermillion cross rather than left blank.
"""

from __future__ import annotations

import base64
import io
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from matplotlib.axes import Axes
from matplotlib.figure import Figure

from ._figures_common import RunLike
from ._figures_curves import linear_theory, loss
from ._figures_gradients import grad_vs_depth, gradient_flow, time_gradients
from ._figures_layers import activations, saturation, weights

FIGURES: dict[str, Callable[..., Axes]] = {
    "gradient_flow": gradient_flow,
    "grad_vs_depth": grad_vs_depth,
    "weights": weights,
    "activations": activations,
    "saturation": saturation,
    "time_gradients": time_gradients,
    "loss": loss,
    "linear_theory": linear_theory,
}
IMAGE_FORMATS = {"png": "image/png", "svg": "image/svg+xml"}
DPI = 120


def _figure_of(fig_or_axes: Figure | Axes) -> Figure:
    if isinstance(fig_or_axes, Axes):
        return fig_or_axes.figure
    if isinstance(fig_or_axes, Figure):
        return fig_or_axes
    raise TypeError(f"expected a matplotlib Figure or Axes, got {type(fig_or_axes).__name__}")


def save_figure(run: RunLike, kind: str, path: str | os.PathLike, **options: Any) -> Path:
    """Draw one kind of figure of a run and write it to a PNG or SVG file.

    Args:
        run: a run or its path (for ``"loss"`` also a list or dict of runs).
        kind: a key of :data:`FIGURES`, e.g. ``"gradient_flow"``.
        path: the image file; its suffix (``.png`` or ``.svg``) picks the format.
            Parent folders are created.
        **options: passed to the figure function.

    Returns:
        The path written.

    Raises:
        ValueError: an unknown kind or file suffix (the message lists the valid ones).
    """
    if kind not in FIGURES:
        raise ValueError(f"unknown figure kind {kind!r}; valid kinds: {', '.join(FIGURES)}")
    path = Path(path)
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in IMAGE_FORMATS:
        raise ValueError(f"cannot save a figure as {path.suffix or 'a file without suffix'!r}: "
                         f"use one of {', '.join('.' + f for f in IMAGE_FORMATS)}")
    figure = _figure_of(FIGURES[kind](run, **options))
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format=fmt, dpi=DPI)
    return path


def figure_to_data_uri(fig_or_axes: Figure | Axes, format: str = "png") -> str:
    """Render a figure (or the figure of an axes) to a base64 ``data:`` URI for HTML.

    Args:
        fig_or_axes: a ``Figure`` or an ``Axes`` of one.
        format: ``"png"`` or ``"svg"``.

    Returns:
        ``"data:image/png;base64,..."`` (or ``image/svg+xml``).
    """
    if format not in IMAGE_FORMATS:
        raise ValueError(f"format must be one of {', '.join(IMAGE_FORMATS)}, got {format!r}")
    buffer = io.BytesIO()
    _figure_of(fig_or_axes).savefig(buffer, format=format, dpi=DPI)
    encoded = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f"data:{IMAGE_FORMATS[format]};base64,{encoded}"


__all__ = [
    "FIGURES",
    "activations",
    "figure_to_data_uri",
    "grad_vs_depth",
    "gradient_flow",
    "linear_theory",
    "loss",
    "save_figure",
    "saturation",
    "time_gradients",
    "weights",
]
