"""NaN/Inf under ``graddoctor run``: the per-step check, the replay of the failing batch, a crash's loss.

See :mod:`graddoctor.integrations.zero_code` for when each runs.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .._foreach import max_abs
from ..probes.nonfinite_replay import locate_nonfinite
from ._zero_code_models import RootTracker, Watched, replay_batch


def nonfinite(
    device: torch.device, loss: torch.Tensor | None, tensors: Sequence[torch.Tensor | None]
) -> bool:
    """Whether the loss or an entry of any tensor is NaN/Inf (one host sync).

    Decided from each tensor's largest magnitude (NaN or inf exactly when an entry is),
    not from its norm: finite float32 entries above ~1e19 have an inf float32 norm.
    """
    present = [t.detach() for t in tensors if t is not None]
    flags = [torch.isfinite(max_abs(present, device)).all()] if present else []
    if loss is not None:
        flags.append(torch.isfinite(loss.to(device)))
    return bool(flags) and not bool(torch.stack(flags).all())


def localise(watched: Watched, tracker: RootTracker, step: int) -> None:
    """Replay the model's last batch under ``locate_nonfinite``; record the source found."""
    watched.replays += 1
    batch = replay_batch(watched.model, tracker) if watched.is_root else None
    if batch is None:  # a container of several models, or no batch to replay
        watched.located = True
        return
    inputs, targets, loss_fn = batch
    writer = watched.monitor.writer
    tracker.paused = True
    try:
        report = locate_nonfinite(watched.model, inputs, targets, loss_fn)
    except Exception as err:
        watched.located = True
        writer.add_event(
            step, "nonfinite_locate_failed", {"step": step, "error": f"{type(err).__name__}: {err}"}
        )
        return
    finally:
        tracker.paused = False
    if report is not None:
        watched.located = True
        replay_loss = (
            type(loss_fn).__name__ if isinstance(loss_fn, torch.nn.Module) else loss_fn.__name__
        )
        writer.add_event(
            step, "nonfinite_source", {**report.to_dict(), "step": step, "replay_loss": replay_loss}
        )


def latest_loss(
    tracker: RootTracker, backpropagated: tuple[int, torch.Tensor] | None
) -> tuple[int, torch.Tensor] | None:
    """The last backpropagated loss, or the last loss module's output when it came later
    (a script that raised on a NaN loss before calling ``backward``)."""
    call = tracker.last_loss
    if (
        call is not None
        and call.output is not None
        and (backpropagated is None or call.order > backpropagated[0])
    ):
        return call.order, call.output.reshape(())
    return backpropagated


def crash_loss(
    open_: list[Watched],
    tracker: RootTracker,
    loss: tuple[int, torch.Tensor] | None,
    last_step_order: int,
) -> tuple[Watched | None, torch.Tensor | None]:
    """The loss of the step the script died in, and the run it belongs to: the one whose model
    was called last before that loss (None if no loss came after the last step)."""
    if loss is None or loss[0] <= last_step_order:
        return None, None
    called = [(_last_call_order(w, tracker, loss[0]), i, w) for i, w in enumerate(open_)]
    called = [item for item in called if item[0] > 0]
    return (max(called, key=lambda item: item[:2])[2], loss[1]) if called else (None, None)


def _last_call_order(watched: Watched, tracker: RootTracker, before: int) -> int:
    """When ``watched``'s model (or one of its container's modules) was last called before ``before``."""
    modules = [watched.model] if watched.is_root else list(watched.model.children())
    orders = [call.order for call in map(tracker.calls.get, modules) if call is not None]
    return max([order for order in orders if order < before], default=0)


__all__ = ["crash_loss", "latest_loss", "localise", "nonfinite"]
