r"""TensorBoard sink: a recorded run's per-layer statistics as TensorBoard scalars.

The sink reads the run file, never the live model, so the same code exports a finished
run (``tensorboard_from_run``) and follows one that is still being written
(``TensorBoardSink.follow``: a background thread tails the file with ``open_run``; the
Monitor is untouched and training pays nothing for it). Gradient histograms need the
gradients themselves, which the run does not keep: ``TensorBoardSink.histograms`` writes
them from the live model on a sparse schedule (each one moves every gradient to the host).

Tags: ``<stat>/<parameter>`` (``grad_norm/encoder.0.weight``), ``<stat>/<module>``
(``act_std/encoder.1``), the run's scalars under their own names (``loss``, ``lr/0``,
``time/step``) and ``grad_hist/<parameter>``. Values that were not measured (NaN in the
run) are left out; infinite ones are written as they are.

Usage::

    sink = TensorBoardSink("tb/exp1", histograms_every=500)
    sink.follow("runs/exp1.gdr")            # live: tensorboard --logdir tb
    ... train with a Monitor writing runs/exp1.gdr ...
    sink.close()                            # exports what is left, closes the writer

    tensorboard_from_run("runs/exp1.gdr", "tb/exp1")   # after the fact
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..monitor.schedules import Schedule, as_schedule
from ..probes.activations import ACTIVATION_STATS
from ..store import Run, RunFileError, open_run
from ._lazy import require

PARAMETER_SCALARS = ("grad_norm", "weight_norm", "update_ratio")
FEATURE = "graddoctor.integrations.tensorboard"


class TensorBoardSink:
    """Writes a run's statistics to TensorBoard event files, each step once.

    Args:
        log_dir: the TensorBoard log folder (``tensorboard --logdir`` its parent).
        parameter_stats: per-parameter statistics to write (default grad_norm,
            weight_norm, update_ratio; any of the run's ``parameters`` statistics).
        module_stats: per-module statistics to write (default all activation statistics;
            ``()`` for none).
        histograms_every: schedule of gradient histograms (int n = every n steps, or
            ``step -> bool``); None writes none.
        flush_secs: how often the SummaryWriter flushes to disk.
    """

    def __init__(
        self,
        log_dir: str | os.PathLike,
        *,
        parameter_stats: Sequence[str] = PARAMETER_SCALARS,
        module_stats: Sequence[str] = ACTIVATION_STATS,
        histograms_every: int | Schedule | None = None,
        flush_secs: int = 10,
    ) -> None:
        for label, stats in (("parameter_stats", parameter_stats), ("module_stats", module_stats)):
            if isinstance(stats, str):
                raise TypeError(f"{label} must be a sequence of statistic names, not the string {stats!r}")
        tensorboard = require("torch.utils.tensorboard", feature=FEATURE, package="tensorboard")
        self.log_dir = Path(log_dir)
        self.parameter_stats = tuple(parameter_stats)
        self.module_stats = tuple(module_stats)
        self.histogram_schedule = as_schedule(histograms_every) if histograms_every is not None else None
        self.writer = tensorboard.SummaryWriter(log_dir=str(self.log_dir), flush_secs=flush_secs)
        self._last: dict[str, int] = {}  # source -> last step written
        self._lock = threading.Lock()
        self._stop: threading.Event | None = None
        self._thread: threading.Thread | None = None
        self._followed: Path | None = None
        self.follow_error: BaseException | None = None
        self.closed = False

    # -- from the run file -----------------------------------------------------------
    def export(self, run: str | os.PathLike | Run) -> int:
        """Write every step of ``run`` not written yet (statistics and scalars).

        Args:
            run: a run file path or an ``open_run`` result.

        Returns:
            the number of values written.
        """
        self._check_open()
        opened = not isinstance(run, Run)
        run = open_run(run)
        try:
            with self._lock:
                written = self._export_stats(run) + self._export_scalars(run)
        finally:
            if opened:
                run.close()
        return written

    def _export_stats(self, run: Run) -> int:
        declared = set(run.stat_names())
        wanted = [s for s in self.parameter_stats + self.module_stats if s in declared]
        written = 0
        for stat in wanted:
            last = self._last.get(stat, -1)
            steps = run.steps(stat)
            for step in steps[steps > last].tolist():
                _, names, values = run.at(stat, step)
                for name, value in zip(names, values, strict=True):
                    if not np.isnan(value):
                        self.writer.add_scalar(f"{stat}/{name}", float(value), step)
                        written += 1
                self._last[stat] = step
        return written

    def _export_scalars(self, run: Run) -> int:
        written = 0
        for name in run.scalar_names():
            key = f"scalar:{name}"
            last = self._last.get(key, -1)
            steps, values = run.scalars(name)
            fresh = steps > last
            for step, value in zip(steps[fresh].tolist(), values[fresh].tolist(), strict=True):
                if not np.isnan(value):
                    self.writer.add_scalar(name, value, step)
                    written += 1
            if fresh.any():
                self._last[key] = int(steps[fresh][-1])
        return written

    def follow(self, path: str | os.PathLike, *, poll_seconds: float = 2.0) -> None:
        """Tail a run file in a background thread: export new steps every ``poll_seconds``.

        The file may not exist yet. ``close()`` stops the thread and exports what is left.
        """
        self._check_open()
        if poll_seconds <= 0:
            raise ValueError(f"poll_seconds must be > 0, got {poll_seconds}")
        if self._thread is not None:
            raise RuntimeError(f"this sink already follows {self._followed}; use one sink per run file")
        self._followed = Path(path)
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._follow_loop, args=(self._followed, poll_seconds), name="graddoctor-tensorboard", daemon=True
        )
        self._thread.start()

    def _follow_loop(self, path: Path, poll_seconds: float) -> None:
        assert self._stop is not None
        while not self._stop.wait(poll_seconds):
            self._export_quietly(path)

    def _export_quietly(self, path: Path) -> None:
        try:
            self.export(path)
        except (FileNotFoundError, RunFileError):  # not created yet, or mid-creation
            pass
        except Exception as err:  # a broken sink must never break training: keep the error
            self.follow_error = err

    # -- from the live model ---------------------------------------------------------
    def histograms(self, model: nn.Module, step: int) -> bool:
        """Write a histogram of every parameter's gradient if the schedule picks ``step``.

        Call it after ``backward()`` and before the optimizer step (and before clipping).

        Returns:
            whether histograms were written.
        """
        self._check_open()
        if self.histogram_schedule is None or not self.histogram_schedule(int(step)):
            return False
        with self._lock:
            for name, param in model.named_parameters():
                if param.grad is not None:
                    grad = param.grad.detach()
                    self.writer.add_histogram(f"grad_hist/{name}", _finite_entries(grad), int(step))
        return True

    # -- lifetime --------------------------------------------------------------------
    def flush(self) -> None:
        """Write buffered events to disk now."""
        self.writer.flush()

    def close(self) -> None:
        """Stop following (exporting what is left) and close the event file."""
        if self.closed:
            return
        try:
            if self._thread is not None and self._stop is not None:
                self._stop.set()
                self._thread.join()
                self._export_quietly(self._followed)
                self._thread = None
        finally:
            self.writer.close()
            self.closed = True

    def _check_open(self) -> None:
        if self.closed:
            raise RuntimeError(f"this TensorBoardSink is closed (log_dir {self.log_dir})")

    def __enter__(self) -> TensorBoardSink:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"TensorBoardSink({str(self.log_dir)!r})"


def _finite_entries(tensor: torch.Tensor) -> torch.Tensor:
    """The finite entries, flattened (TensorBoard's histogram rejects NaN/Inf); one 0 when none is."""
    flat = tensor.reshape(-1)
    finite = torch.isfinite(flat)
    if bool(finite.all()):
        return flat
    kept = flat[finite]
    return kept if kept.numel() else torch.zeros(1, dtype=flat.dtype, device=flat.device)


def tensorboard_from_run(run: str | os.PathLike | Run, log_dir: str | os.PathLike, **options: Any) -> Path:
    """Export a recorded run to TensorBoard event files.

    Args:
        run: a run file path or an ``open_run`` result.
        log_dir: the TensorBoard log folder.
        **options: ``TensorBoardSink`` options (parameter_stats, module_stats).

    Returns:
        ``log_dir`` as a Path.
    """
    with TensorBoardSink(log_dir, **options) as sink:
        sink.export(run)
    return Path(log_dir)


__all__ = ["PARAMETER_SCALARS", "TensorBoardSink", "tensorboard_from_run"]
