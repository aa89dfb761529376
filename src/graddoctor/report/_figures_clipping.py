"""The clipping figure: the gradient norm before clipping against the clip's threshold.

Gradients read after a norm clip are at most the threshold, so a clip that fires on every
step hides how large the gradients were (Pascanu, Mikolov & Bengio 2013). A recorder that
sees the clip logs the norm before it (see :mod:`graddoctor.probes.clipping`); this figure
draws that norm, the threshold, and marks the steps where the clip fired.
"""

from __future__ import annotations

import numpy as np
from matplotlib.axes import Axes

from ..probes.clipping import CLIP_FIRED, CLIP_THRESHOLD, CLIP_TOTAL_NORM
from ._figures_common import (
    PALETTE,
    RunLike,
    log_scale_if_wide,
    new_axes,
    opened,
    set_title,
    show_message,
    step_axis,
)
from ._figures_sampling import envelope


def clipping(run: RunLike, ax: Axes | None = None) -> Axes:
    """Gradient norm before clipping, the clip threshold, and the steps where it fired.

    Args:
        run: a run, its view or the path of a ``.gdr`` file.
        ax: axes to draw on (default: a new figure).

    Returns:
        The axes: one line of the pre-clip total norm, one step line of the threshold, and
        dots on the steps whose clip fired.
    """
    ax = new_axes(ax)
    with opened(run) as view:
        steps, norms = view.scalars(CLIP_TOTAL_NORM)
        threshold_steps, thresholds = view.scalars(CLIP_THRESHOLD)
        fired_steps, fired = view.scalars(CLIP_FIRED)
    headline = "Gradient norm before clipping"
    if steps.size == 0:
        return show_message(
            ax, f"no {CLIP_TOTAL_NORM!r} recorded: the loop clips nothing seen", headline
        )
    ax.plot(*envelope(steps, norms), color=PALETTE[0], linewidth=1.3, label="norm before clipping")
    if threshold_steps.size:
        ax.step(
            threshold_steps,
            thresholds,
            where="post",
            color=PALETTE[5],
            linewidth=1.1,
            linestyle="--",
            label="threshold",
        )
    hit = fired_steps[np.nan_to_num(fired) > 0]
    if hit.size:
        at = np.interp(hit, steps, norms)
        ax.plot(hit, at, "o", color=PALETTE[5], markersize=3, label="clip fired")
    log_scale_if_wide(ax, np.concatenate([norms, thresholds]))
    share = f"fired on {hit.size} of {fired_steps.size} steps" if fired_steps.size else ""
    set_title(ax, headline, share)
    step_axis(ax)
    ax.set_ylabel("total gradient norm")
    ax.legend(loc="best", fontsize=8)
    return ax


__all__ = ["clipping"]
