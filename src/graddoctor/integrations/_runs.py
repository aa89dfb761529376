"""What the framework callbacks share: one run file per fit, its Monitor, its TensorBoard
sink, the step in progress, and the final diagnosis."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import torch

from .._paths import timestamped_run_path
from ..diagnosis import Diagnosis, diagnose
from ..monitor import Monitor
from ..monitor.schedules import Schedule
from ._lazy import require


def next_run_path(path: Path | None, dirpath: Path, name: str, previous: list[Path]) -> Path:
    """``path`` for the first fit, then ``<stem>-2.gdr``...; without ``path`` a timestamped
    ``<dirpath>/<name>-<time>.gdr``."""
    if path is None:
        return timestamped_run_path(dirpath, name)
    if not previous:
        return path
    return path.with_name(f"{path.stem}-{len(previous) + 1}{path.suffix}")


def diagnose_and_report(path: Path, verbose: bool, feature: str) -> Diagnosis | None:
    """Diagnose a finished run and print one line (a rich panel too if ``verbose``)."""
    try:
        diagnosis = diagnose(path)
    except Exception as err:  # training is over: a failed diagnosis must not fail it
        warnings.warn(f"graddoctor could not diagnose {path}: {err}", RuntimeWarning, stacklevel=3)
        return None
    print(f"graddoctor: {diagnosis.summary} ({diagnosis.steps} steps, run file {path})", flush=True)
    if verbose:
        require("rich.console", feature=feature).Console().print(diagnosis)
    return diagnosis


class RunPerFit:
    """The part of a framework callback that is not about the framework: a run per fit.

    A subclass (which also derives from its framework's callback class) sets ``FEATURE``,
    calls :meth:`_init_runs` from ``__init__`` and the ``_open_run`` / ``_before_step`` /
    ``_after_step`` / ``_close_run`` / ``_report`` steps from the framework's events.

    Attributes:
        monitor: the Monitor of the fit in progress (None outside a fit).
        sink: the TensorBoard sink following the run (None without ``tensorboard``).
        run_paths: the run files of every fit so far; ``run_path`` the last one.
        diagnosis: the Diagnosis of the last fit (None before, or if it failed).
    """

    FEATURE = "graddoctor.integrations"

    def _init_runs(
        self,
        path: str | os.PathLike | None,
        dirpath: str | os.PathLike,
        name: str,
        every: int | Schedule,
        activations_every: int | Schedule | None,
        modules: str | list[str],
        track_updates: bool,
        tensorboard: str | os.PathLike | None,
        histograms_every: int | Schedule | None,
        overwrite: bool,
        run_diagnosis: bool,
        verbose: bool,
    ) -> None:
        """Check and keep the options every callback shares (see the callbacks' Args)."""
        if not isinstance(name, str) or not name or os.sep in name:
            raise ValueError(f"name must be a non-empty file name prefix without {os.sep!r}, got {name!r}")
        if histograms_every is not None and tensorboard is None:
            raise ValueError("histograms_every needs tensorboard=<log folder> to write the histograms to")
        self.path = Path(path) if path is not None else None
        self.dirpath = Path(dirpath)
        self.name = name
        self.monitor_options = {"every": every, "activations_every": activations_every, "modules": modules,
                                "track_updates": track_updates, "overwrite": overwrite}
        self.tensorboard = Path(tensorboard) if tensorboard is not None else None
        self.histograms_every = histograms_every
        self.run_diagnosis = run_diagnosis
        self.verbose = verbose
        self.monitor: Monitor | None = None
        self.sink: Any = None
        self.run_paths: list[Path] = []
        self.diagnosis: Diagnosis | None = None
        self._stepping = False  # before_step() ran, after_step() not yet

    @property
    def run_path(self) -> Path | None:
        return self.run_paths[-1] if self.run_paths else None

    def _next_path(self) -> Path:
        return next_run_path(self.path, self.dirpath, self.name, self.run_paths)

    def _open_run(self, model: torch.nn.Module, path: Path, config: dict) -> None:
        """Start the fit's Monitor on ``path`` and, with ``tensorboard``, its live sink."""
        self.monitor = Monitor(model, None, path, config=config, **self.monitor_options)
        self.run_paths.append(path)
        self.diagnosis = None
        self._stepping = False
        if self.tensorboard is not None:
            from .tensorboard import TensorBoardSink

            self.sink = TensorBoardSink(self.tensorboard / path.stem, histograms_every=self.histograms_every)
            self.sink.follow(path)

    def _before_step(self, model: torch.nn.Module) -> None:
        """Gradients are final: histograms to the sink, then ``Monitor.before_step``."""
        if self.sink is not None:
            self.sink.histograms(model, self.monitor.step_index)
        self.monitor.before_step()
        self._stepping = True

    def _after_step(self) -> None:
        self.monitor.after_step()
        self._stepping = False

    def _close_run(self, exception: BaseException | None = None) -> Monitor | None:
        """Close the fit in progress (its last step, its run file, its sink); its Monitor.

        Returns:
            the closed Monitor, or None when no fit was in progress.
        """
        monitor, self.monitor = self.monitor, None
        if monitor is None:
            return None
        try:
            if self._stepping:  # the step in progress: its gradients are the last seen
                monitor.after_step()
                self._stepping = False
            if exception is not None:
                monitor.__exit__(type(exception), exception, exception.__traceback__)
            else:
                monitor.close()
        finally:
            if self.sink is not None:
                self.sink.close()
                self.sink = None
        return monitor

    def _report(self, path: Path, main_process: bool) -> None:
        """Diagnose the closed run on the main process when ``run_diagnosis`` asks for it."""
        if self.run_diagnosis and main_process:
            self.diagnosis = diagnose_and_report(path, self.verbose, self.FEATURE)
