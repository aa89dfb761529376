"""Curve figures: the loss of one or several runs, and the deep linear chain against its theory."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.axes import Axes

from ..store import Run
from ..views import RunView
from ._figures_common import (
    PALETTE,
    RunLike,
    choose_steps,
    log_scale_if_wide,
    mark_nonfinite_steps,
    new_axes,
    opened,
    set_title,
    show_message,
    step_axis,
)
from ._figures_sampling import envelope
from ._guard_marks import draw_guard_events, guard_events


def _named_runs(runs: RunLike | Sequence[RunLike] | Mapping[str, RunLike]) -> dict[str, RunLike]:
    """``{label: run}`` from one run, a list (labelled by file name) or a dict."""
    if isinstance(runs, Mapping):
        named = {str(k): v for k, v in runs.items()}
    elif isinstance(runs, (RunView, Run, str, os.PathLike)):
        named = {_stem(runs): runs}
    elif isinstance(runs, Sequence):
        named = {}
        for item in runs:
            label = _stem(item)
            while label in named:
                label += "'"
            named[label] = item
    else:
        raise TypeError(
            f"loss() needs a run, a list of runs or a dict name -> run, got {type(runs).__name__}"
        )
    if not named:
        raise ValueError("loss() got no runs to draw")
    return named


def _stem(run: object) -> str:
    if isinstance(run, (Run, RunView)):
        return run.path.stem
    if isinstance(run, (str, os.PathLike)):
        return os.path.splitext(os.path.basename(os.fspath(run)))[0]
    raise TypeError(f"a run must be a Run or the path of a .gdr file, got {type(run).__name__}")


def loss(
    runs: RunLike | Sequence[RunLike] | Mapping[str, RunLike],
    ax: Axes | None = None,
    *,
    name: str = "loss",
    log: bool | None = None,
) -> Axes:
    """Loss curve of one run, or of compared trials overlaid on one axis.

    The y axis is logarithmic when the finite losses span more than two decades (or as
    ``log`` says). A run whose loss becomes NaN or Inf gets a cross, in its colour, at
    the first non-finite step along the top edge: that is where it diverged.

    Args:
        runs: a run or path, a list of them (labelled by file name), or ``{label: run}``.
        ax: axes to draw on (default: a new figure).
        name: the scalar to draw (e.g. ``"lr/0"``).
        log: force a log (True) or linear (False) y axis; default: automatic.

    Returns:
        The axes; one line per run whose data are the run's ``scalars(name)``.
    """
    named = _named_runs(runs)
    ax = new_axes(ax)
    curves = {}
    with contextlib.ExitStack() as stack:
        views = {label: stack.enter_context(opened(run)) for label, run in named.items()}
        for label, view in views.items():
            curves[label] = view.scalars(name)
        guarded = {label: guard_events(view.run) for label, view in views.items()}
        known = sorted({n for view in views.values() for n in view.run.scalar_names()})
    headline = "Training loss" if name == "loss" else name
    if all(steps.size == 0 for steps, _ in curves.values()):
        return show_message(
            ax,
            f"no {name!r} scalar recorded (call mon.log({name}=...)); recorded: {known}",
            headline,
        )
    diverged = []
    for index, (label, (steps, values)) in enumerate(curves.items()):
        color = PALETTE[index % len(PALETTE)]
        ax.plot(
            *envelope(steps, values),
            color=color,
            linewidth=1.3,
            label=label if len(curves) > 1 else name,
        )
        draw_guard_events(ax, guarded[label], color)  # the Guard's skips, clips and rollbacks
        bad = np.nonzero(~np.isfinite(values))[0]
        if bad.size:
            first = int(steps[bad[0]])
            who = f"{label} " if len(curves) > 1 else ""
            mark_nonfinite_steps(ax, [first], f"{who}diverged at step {first}", color=color)
            diverged.append(f"{who}diverged at step {first}")
    all_steps = np.concatenate([steps for steps, _ in curves.values()])
    if all_steps.size:  # runs that diverged keep their full length on the x axis
        pad = max(0.5, 0.02 * float(all_steps.max() - all_steps.min()))
        ax.set_xlim(float(all_steps.min()) - pad, float(all_steps.max()) + pad)
    every = np.concatenate([values for _, values in curves.values()])
    if log is None:
        log_scale_if_wide(ax, every)
    elif log:
        ax.set_yscale("log")
    step_axis(ax)
    ax.set_ylabel(name)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    set_title(
        ax,
        headline if len(curves) == 1 else f"{headline}: compared runs",
        _loss_hint(curves, diverged),
    )
    return ax


def _loss_hint(curves: dict[str, tuple[np.ndarray, np.ndarray]], diverged: list[str]) -> str:
    if diverged:
        return "x = first non-finite loss: " + "; ".join(diverged)
    if len(curves) > 1:
        finals = {label: values[-1] for label, (_, values) in curves.items() if values.size}
        best = min(finals, key=finals.get)
        return f"lowest final value: {best} ({finals[best]:.3g})"
    values = next(iter(curves.values()))[1]
    return f"from {values[0]:.3g} to {values[-1]:.3g}" if values.size else ""


def linear_theory(
    run: RunLike,
    ax: Axes | None = None,
    *,
    w: float | None = None,
    b: float | None = None,
    x: float | None = None,
    step: int | None = None,
    output_grad: float | None = None,
) -> Axes:
    r"""Measured weight-gradient norms of the deep linear chain against the closed form.

    For the chain of ``graddoctor.theory.build_linear_chain(n, w, b)`` (layers
    ``layer_1 .. layer_n``) fed a single input ``x``,

    .. math::
        \left|\frac{\partial L}{\partial w_i}\right| = \left|\frac{\partial L}{\partial a_n}\right|
        \, |a_{i-1}| \, |w|^{n-i}

    (the deep linear chain of the lecture slides "Vanishing and Exploding Gradients - A
    Simple Example"). Theory is drawn as a line, the run's ``grad_norm`` of each
    ``layer_i.weight`` as markers.

    Args:
        run: a run recorded on the chain.
        ax: axes to draw on (default: a new figure).
        w, b, x: the chain's weight, bias and input; default: ``run.meta["config"]``.
        step: the step to compare (default: the first recorded, before any update moved
            the weights away from ``w`` and ``b``).
        output_grad: :math:`\partial L / \partial a_n` (default: config ``"output_grad"``
            or 1, i.e. a loss equal to the output such as ``model(x).sum()``).

    Returns:
        The axes; its first line is the theory, its second the measurements.
    """
    ax = new_axes(ax)
    with opened(run) as view:
        config = view.run.meta.get("config") or {}
        given = {"w": w, "b": b, "x": x}
        values = {key: config.get(key) if value is None else value for key, value in given.items()}
        missing = [key for key, value in values.items() if value is None]
        if missing:
            raise ValueError(
                f"linear_theory needs {', '.join(missing)}: pass them as options or record them "
                "with Monitor(config={'w': ..., 'b': ..., 'x': ...})"
            )
        scale = config.get("output_grad", 1.0) if output_grad is None else output_grad
        layers = _chain_weights(view)
        if not layers or not view.has_stat("grad_norm"):
            raise ValueError(
                f"{view.path.name} was not recorded on graddoctor.theory.build_linear_chain "
                "(no layer_1.weight gradients)"
            )
        recorded = view.run.steps("grad_norm")
        (chosen,) = choose_steps(recorded, [int(recorded[0]) if step is None else step])
        _, names, vector = view.run.at("grad_norm", chosen)
    measured = vector[[names.index(p) for p in layers]]
    n = len(layers)
    from ..theory import linear_chain_weight_gradients  # torch, for this figure alone

    theory = np.abs(
        float(scale) * linear_chain_weight_gradients(values["x"], values["w"], values["b"], n)
    )
    depth = np.arange(1, n + 1)
    ax.plot(depth, theory, color=PALETTE[0], linewidth=1.5, label=r"theory $|a_{i-1}\, w^{n-i}|$")
    ax.plot(
        depth,
        measured,
        linestyle="none",
        marker="o",
        markersize=6,
        markerfacecolor="none",
        markeredgewidth=1.5,
        color=PALETTE[1],
        label=f"measured (step {chosen})",
    )
    bad = np.nonzero(~np.isfinite(measured))[0]
    mark_nonfinite_steps(ax, depth[bad], "non-finite measured gradient")
    positive = np.concatenate([theory, measured])
    if np.any(np.isfinite(positive) & (positive > 0)):
        ax.set_yscale("log")
    ax.set_xlabel("layer i (1 = input side)")
    ax.set_ylabel(r"weight gradient $|\partial L / \partial w_i|$")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    w_, b_, x_ = values["w"], values["b"], values["x"]
    trend = (
        "vanish toward the input"
        if abs(w_) < 1
        else "explode toward the input"
        if abs(w_) > 1
        else "stay flat"
    )
    set_title(
        ax,
        f"Deep linear chain (n={n}, w={w_:g}, b={b_:g}, x={x_:g}): measured vs theory",
        f"markers on the line = the closed form holds; gradients {trend} as |w|^(n-i)",
    )
    return ax


def _chain_weights(view: RunView) -> list[str]:
    """``layer_1.weight``, ``layer_2.weight``... of a run recorded on the linear chain."""
    params = set(view.run.names("parameters"))
    layers: list[str] = []
    while f"layer_{len(layers) + 1}.weight" in params:
        layers.append(f"layer_{len(layers) + 1}.weight")
    return layers


def has_linear_theory(view: RunView) -> bool:
    """Whether the run was recorded on the linear chain with its ``w``, ``b`` and ``x`` in the config."""
    config = view.run.meta.get("config") or {}
    return (
        all(key in config for key in ("w", "b", "x"))
        and bool(_chain_weights(view))
        and view.has_stat("grad_norm")
    )
