"""Gradient over time: the norm reaching each input time step of a recurrent module."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.axes import Axes

from ._figures_common import (
    NONFINITE_LABEL,
    RunLike,
    choose_steps,
    mark_nonfinite_steps,
    new_axes,
    opened,
    sequential_colors,
    set_title,
    show_message,
)


def time_gradients(
    run: RunLike,
    ax: Axes | None = None,
    *,
    steps: Sequence[int] | int | None = None,
    module: str | None = None,
) -> Axes:
    r"""Norm of :math:`\partial L / \partial x_t` for each input time step t of a recurrent module.

    Its decay from the last time step back to the first is the vanishing gradient over
    time (Pascanu, Mikolov & Bengio 2013): early inputs barely move the loss.

    Args:
        run: a run or its path.
        ax: axes to draw on (default: a new figure).
        steps: training steps to draw (default: the first, middle and last recorded).
        module: the recurrent module (default: the first one executed).

    Returns:
        The axes; a message on them when the run has no recurrent module.
    """
    ax = new_axes(ax)
    headline = "Gradient over time"
    with opened(run) as view:
        recurrent = view.time_gradient_stats()
        if not recurrent:
            return show_message(
                ax,
                "no recurrent module in this run:\ntime gradients are recorded for nn.RNN / LSTM / GRU\n"
                "(and modules with a weight_hh) on activation steps",
                headline,
            )
        if module is None:
            module = next(iter(recurrent))
        elif module not in recurrent:
            raise ValueError(
                f"module={module!r} has no time gradients; recurrent modules: {sorted(recurrent)}"
            )
        recorded, names, values = view.series(recurrent[module])
    times = np.array([int(n) for n in names])
    chosen = choose_steps(recorded, steps)
    hint = ""
    for step, color in zip(chosen, sequential_colors(len(chosen)), strict=True):
        row = values[int(np.nonzero(recorded == step)[0][0])]
        length = _sequence_length(row)
        ax.plot(
            times[:length],
            row[:length],
            marker="o",
            markersize=3,
            color=color,
            label=f"step {step}",
        )
        bad = np.nonzero(~np.isfinite(row[:length]))[0]
        mark_nonfinite_steps(ax, times[bad], f"{NONFINITE_LABEL}, step {step}")
        if (
            length >= 2
            and np.isfinite(row[0])
            and np.isfinite(row[length - 1])
            and row[length - 1] > 0
        ):
            hint = f"at step {step}, t=0 gets {row[0] / row[length - 1]:.2g}x the gradient of t={length - 1}"
    ax.set_yscale("log")
    ax.set_xlabel("input time step t (0 = earliest)")
    ax.set_ylabel(r"$\|\partial L / \partial x_t\|$")
    ax.legend(fontsize=7, loc="best")
    ax.grid(True, which="major", alpha=0.3)
    set_title(
        ax, f"{headline} of {module!r}: falling toward t=0 means long-range memory is lost", hint
    )
    return ax


def _sequence_length(row: np.ndarray) -> int:
    """Time steps actually recorded in a padded row (shorter sequences end in NaN padding).

    A recorded row that is NaN throughout is a non-finite gradient, kept at full length.
    """
    present = np.nonzero(~np.isnan(row))[0]
    return int(present[-1]) + 1 if present.size else row.size
