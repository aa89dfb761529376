"""Figures drawn from a recorded run, never from live hooks, and the registry of their kinds.

Each figure is a function ``(run, ax=None, **options) -> Axes``: ``run`` is a
:class:`graddoctor.Run`, the path of a ``.gdr`` file or a
:class:`graddoctor.views.RunView`; without ``ax`` the figure is drawn on a new
``matplotlib.figure.Figure`` (pyplot is never used, so nothing global in matplotlib
changes and no GUI backend is needed). :data:`FIGURES` maps the stable kind names to a
:class:`Figure`: the drawing function, the caption of the HTML report and what a run must
hold for the report to draw it. ``FIGURES[kind](run, ax=None)`` draws;
:func:`save_figure` renders one kind to PNG or SVG and :func:`figure_to_data_uri` inlines
a figure in an HTML page.

Conventions shared by every figure: layers in execution order (input side first),
viridis for depth or time, the Okabe-Ito palette for compared runs, and NaN/Inf marked
with a vermillion cross rather than left blank.

To add a figure: write its drawing function (in a ``_figures_*`` module) and add one
entry to :data:`FIGURES`; the report, ``graddoctor plot`` and ``graddoctor.report``'s
exports read the registry.
"""

from __future__ import annotations

import base64
import importlib
import io
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..probes.clipping import CLIP_TOTAL_NORM

if TYPE_CHECKING:  # the registry imports neither matplotlib nor torch: the CLI's help reads it
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure as MplFigure

    from ..views import RunView
    from ._figures_common import RunLike


@dataclass(frozen=True)
class Figure:
    """One kind of figure: how to draw it, its caption, and when a run has what it needs.

    Calling it draws the figure: ``FIGURES[kind](run, ax=None, **options) -> Axes``.

    Attributes:
        draw: ``"module:function"`` of the drawing function ``(run, ax=None, **options) ->
            Axes`` in this package, imported on first use (so reading the registry costs
            no matplotlib import).
        caption: one sentence under the figure in the HTML report.
        needs: ``(view) -> bool``, whether the run holds what the figure shows; the
            report draws the figures whose ``needs`` hold.
    """

    draw: str
    caption: str
    needs: Callable[[RunView], bool]

    def function(self) -> Callable[..., Axes]:
        """The drawing function (imports its module, and matplotlib, on first use)."""
        module, _, name = self.draw.partition(":")
        return getattr(importlib.import_module(f"{__package__}.{module}"), name)

    def __call__(self, run: RunLike, ax: Axes | None = None, **options: Any) -> Axes:
        return self.function()(run, ax, **options)


def _recorded(*stats: str) -> Callable[[RunView], bool]:
    """A ``needs`` that holds when any of ``stats`` was recorded at least once."""
    return lambda view: any(view.has_stat(stat) for stat in stats)


def _has_time_gradients(view: RunView) -> bool:
    return bool(view.time_gradient_stats())


def _has_loss(view: RunView) -> bool:
    return view.has_scalar("loss")


def _has_linear_theory(view: RunView) -> bool:
    from ._figures_curves import has_linear_theory

    return has_linear_theory(view)


FIGURES: dict[str, Figure] = {
    "gradient_flow": Figure(
        "_figures_gradients:gradient_flow",
        "Gradient norm per layer (rows, input at the top) and step (columns), log colour scale.",
        _recorded("grad_norm"),
    ),
    "grad_vs_depth": Figure(
        "_figures_gradients:grad_vs_depth",
        "Back-propagated gradient norm against depth (Glorot & Bengio 2010, fig. 7).",
        _recorded("out_grad_norm", "grad_norm"),
    ),
    "weights": Figure(
        "_figures_weights:weights",
        "Weight norm and update ratio per layer; ~1e-3 is the usual healthy update ratio.",
        _recorded("weight_norm"),
    ),
    "activations": Figure(
        "_figures_activations:activations",
        "Activation mean ± std per layer over training (Glorot & Bengio 2010, fig. 2).",
        _recorded("act_mean"),
    ),
    "saturation": Figure(
        "_figures_activations:saturation",
        "Fraction of saturated (bounded activations) and dead (rectifier) units over training.",
        _recorded("act_saturated"),
    ),
    "time_gradients": Figure(
        "_figures_time:time_gradients",
        "Gradient reaching each time step's input of a recurrent layer (Pascanu, Mikolov & Bengio 2013).",
        _has_time_gradients,
    ),
    "clipping": Figure(
        "_figures_clipping:clipping",
        "Gradient norm before clipping against the clip's threshold; dots: steps where it fired.",
        lambda view: view.has_scalar(CLIP_TOTAL_NORM),
    ),
    "loss": Figure(
        "_figures_curves:loss",
        "Training loss; a cross marks the first non-finite value.",
        _has_loss,
    ),
    "linear_theory": Figure(
        "_figures_curves:linear_theory",
        "Measured per-layer weight gradients against the deep linear chain's closed form.",
        _has_linear_theory,
    ),
}
IMAGE_FORMATS = {"png": "image/png", "svg": "image/svg+xml"}
DPI = 120


def _figure_of(fig_or_axes: MplFigure | Axes) -> MplFigure:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure as MplFigure

    if isinstance(fig_or_axes, Axes):
        return fig_or_axes.figure
    if isinstance(fig_or_axes, MplFigure):
        return fig_or_axes
    raise TypeError(f"expected a matplotlib Figure or Axes, got {type(fig_or_axes).__name__}")


# savefig's defaults under which _png writes what savefig writes
_SAVEFIG_DEFAULTS = {
    "savefig.facecolor": "auto",
    "savefig.edgecolor": "auto",
    "savefig.transparent": False,
    "savefig.bbox": None,
}


def _png(figure: MplFigure) -> bytes:
    """The PNG of ``figure`` at :data:`DPI`, the bytes ``savefig`` writes, drawn once.

    ``savefig`` draws a constrained-layout figure twice, once to place the axes and once
    to render, each measuring every text with a renderer of its own; drawing once on an
    Agg canvas places and renders with one renderer, a fifth of the report's time. The
    figure keeps its canvas and dpi. Under non-default ``savefig.*`` settings (a
    transparent or tight ``rcParams``) this is ``savefig`` itself.
    """
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    buffer = io.BytesIO()
    if any(matplotlib.rcParams[k] != v for k, v in _SAVEFIG_DEFAULTS.items()):
        figure.savefig(buffer, format="png", dpi=DPI)
        return buffer.getvalue()
    canvas, dpi = figure.canvas, figure.dpi
    try:
        figure.dpi = DPI
        FigureCanvasAgg(figure).print_png(buffer)
    finally:
        figure.dpi = dpi
        figure.set_canvas(canvas)
    return buffer.getvalue()


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
        raise ValueError(
            f"cannot save a figure as {path.suffix or 'a file without suffix'!r}: "
            f"use one of {', '.join('.' + f for f in IMAGE_FORMATS)}"
        )
    figure = _figure_of(FIGURES[kind](run, **options))
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "png":
        path.write_bytes(_png(figure))
    else:
        figure.savefig(path, format=fmt, dpi=DPI)
    return path


def figure_to_data_uri(fig_or_axes: MplFigure | Axes, format: str = "png") -> str:
    """Render a figure (or the figure of an axes) to a base64 ``data:`` URI for HTML.

    Args:
        fig_or_axes: a ``Figure`` or an ``Axes`` of one.
        format: ``"png"`` or ``"svg"``.

    Returns:
        ``"data:image/png;base64,..."`` (or ``image/svg+xml``).
    """
    if format not in IMAGE_FORMATS:
        raise ValueError(f"format must be one of {', '.join(IMAGE_FORMATS)}, got {format!r}")
    figure = _figure_of(fig_or_axes)
    if format == "png":
        data = _png(figure)
    else:
        buffer = io.BytesIO()
        figure.savefig(buffer, format=format, dpi=DPI)
        data = buffer.getvalue()
    encoded = base64.b64encode(data).decode("ascii")
    return f"data:{IMAGE_FORMATS[format]};base64,{encoded}"


def __getattr__(name: str) -> Callable[..., Axes]:
    """Each figure kind is also this module's drawing function of that name."""
    if name in FIGURES:
        return FIGURES[name].function()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["FIGURES", "Figure", "figure_to_data_uri", "save_figure", *FIGURES]
