"""The Monitor's write side: statistics wait on the device, then go to the host in one transfer.

Nothing the Monitor measures during a step leaves the device; each recorded step adds
its statistic blocks, per-time-step gradient norms and tensor scalars here, and
:meth:`PendingWriter.flush` moves all of them to the host with one ``.cpu()``, hands
each row to the run writer under its statistic's name, and commits.

The run writer also commits on its own when the loop pauses, at exit and on SIGTERM: it
then collects what waits here first (``RunWriter.set_collector``), so a run killed during
an evaluation keeps its statistics, not only its scalars. Everything here changes under
the writer's lock. Scalars are checked when logged (``ValueError`` to the caller), so a
flush never fails on a row; a flush that fails anyway (the device) drops its batch with
a warning, never poisoning the next one.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .._version import __version__
from ..probes._stat_block import StatBlock
from ..probes.statistics import (
    ACTIVATION_STATS,
    MODULES,
    PARAMETER_STATS,
    PARAMETERS,
    TIME,
    time_stat_name,
)
from ..probes.structure import model_summary
from ..store import RunWriter
from ..store._rows import check_name, check_scalar
from ._watched import Watched
from .distributed import Layout, NullWriter


def run_header(
    watched: Watched,
    device: torch.device,
    scaler: Any,
    layout: Layout,
    config: dict[str, Any] | None,
) -> dict[str, Any]:
    """The metadata a run file starts with: versions, time, configuration, the model's structure, the setup.

    Args:
        watched: the plain model, its optimizer and which of its parameters are monitored.
        device, scaler, layout: the setup the Monitor measures under.
        config: the user's JSON-serialisable configuration.
    """
    optimizer = watched.optimizer
    return {
        "graddoctor_version": __version__,
        "torch_version": torch.__version__,
        "start_time": _dt.datetime.now(_dt.timezone.utc).isoformat(),
        "config": config or {},
        "model": model_summary(watched.model),
        "frozen_parameters": watched.frozen,
        "unmonitored_parameters": watched.unmonitored,
        "device": str(device),
        "optimizer": type(optimizer).__name__ if optimizer is not None else None,
        "distributed": layout.to_meta(),
        "amp_scaler": type(scaler).__name__ if scaler is not None else None,
    }


@dataclass
class _Item:
    step: int
    kind: str  # "stats" (a group's block), "time" (a recurrent module's norms) or "scalar"
    name: str  # the group, the module, or the scalar's name
    values: torch.Tensor
    rows: tuple[str, ...] = ()  # the statistic of each row of a block


class PendingWriter:
    """A run writer, and the device tensors waiting for it in the order they were measured.

    Args:
        path: the run file.
        recording: whether this process writes (else a ``NullWriter``: no file, nothing kept).
        commit_every, commit_seconds, overwrite: the ``RunWriter``'s options.
        meta: the run's header, checked before the file is created.
    """

    def __init__(
        self,
        path: Any,
        recording: bool,
        commit_every: int = 25,
        commit_seconds: float = 2.0,
        overwrite: bool = False,
        meta: dict[str, Any] | None = None,
    ) -> None:
        self.recording = recording
        if recording:
            self.writer: Any = RunWriter(
                path,
                commit_every=commit_every,
                commit_seconds=commit_seconds,
                overwrite=overwrite,
                meta=meta,
            )
        else:
            self.writer = NullWriter(path)
        self.lock = self.writer.lock  # held while what waits here changes (the collector's too)
        self._items: list[_Item] = []
        self._scalars: dict[tuple[int, str], torch.Tensor] = {}  # tensor scalars, by (step, name)
        self._order_saved = False
        self.failsafe: Any = None  # reports a flush that fails (``monitor._failsafe``); None: raise
        self.live: Any = None  # sees each committed batch on the host (``monitor.live``)
        if recording:
            self.writer.set_collector(self._collect)

    def start(self, parameters: list[str], modules: list[str]) -> None:
        """Declare the run's parameter and module columns."""
        self.writer.define_group(PARAMETERS, parameters)
        self.writer.define_stats(PARAMETERS, PARAMETER_STATS)
        self.writer.define_group(MODULES, modules)
        self.writer.define_stats(MODULES, ACTIVATION_STATS)

    @staticmethod
    def check(name: Any, value: Any) -> None:
        """ValueError unless ``name`` is text and ``value`` None, a real number or a
        one-element real tensor (what :meth:`scalar` accepts)."""
        check_name(name, "scalar name")
        if not isinstance(value, torch.Tensor):
            check_scalar(value)
        elif value.numel() != 1:
            raise ValueError(
                f"scalar {name!r} must have one element, got shape {tuple(value.shape)}"
            )
        elif value.is_complex():
            raise ValueError(f"a scalar must be a real number or None, got {value!r}")

    def scalar(self, step: int, name: str, value: Any) -> None:
        """A float or None (written now) or a one-element real tensor (kept for the next transfer).

        A value for a ``(step, name)`` that already waits here replaces it (a scalar the
        user logs wins over the Monitor's own).

        Raises:
            ValueError: see :meth:`check` (nothing is kept).
        """
        self.check(name, value)
        with self.lock:
            self._scalars.pop((step, name), None)
            if not isinstance(value, torch.Tensor):
                self.writer.add_scalar(step, name, value)
                if self.live is not None and self.recording:
                    self.live.scalar(step, name, value)
            elif self.recording:
                self._scalars[(step, name)] = value.detach().reshape(())

    def amp_scalars(self, step: int, scale: Any, skipped: Any) -> None:
        """GradScaler's loss scale of a step (if known) and whether it skipped the step (0 or 1)."""
        if scale is not None:
            self.scalar(step, "amp_scale", scale)
        self.scalar(step, "amp_skipped", skipped)

    def add_step(
        self,
        step: int,
        parameters: StatBlock | None,
        modules: StatBlock | None,
        times: dict[str, torch.Tensor],
        execution_order: list[str],
    ) -> None:
        """What one step measured (kept on the device until the next flush).

        Args:
            step: the step.
            parameters, modules: the ``"parameters"`` and ``"modules"`` blocks (None: not measured).
            times: each recurrent module's ``[T]`` gradient norms over its input's time steps.
            execution_order: the modules in forward order, saved with the first module block.
        """
        if not self.recording:
            return
        items = []
        if parameters is not None:
            items.append(_Item(step, "stats", PARAMETERS, parameters.values, parameters.names))
        if modules is not None:
            items.append(_Item(step, "stats", MODULES, modules.values, modules.names))
        items.extend(_Item(step, "time", module, norms) for module, norms in times.items())
        with self.lock:
            self._items.extend(items)
            if modules is not None and not self._order_saved and execution_order:
                self.writer.set_meta({"execution_order": execution_order})
                self._order_saved = True

    def flush(self) -> None:
        """Move everything to the host in one transfer, add it to the run file and commit."""
        with self.lock:
            self._collect()
            self.writer.commit()

    def _collect(self) -> None:
        """Hand what waits here to the writer (under its lock; also its collector)."""
        items, self._items = self._items, []
        scalars, self._scalars = self._scalars, {}
        items += [_Item(step, "scalar", name, value) for (step, name), value in scalars.items()]
        if not items:
            return
        try:
            self._write(items)
        except Exception as err:  # the device, or a bug: this batch is lost, the next one is not
            if self.failsafe is None:
                raise
            lost = "the statistics waiting for a commit"
            self.failsafe.failed([lost], err, action="write", consequence="they are lost")

    def _write(self, items: list[_Item]) -> None:
        writer = self.writer
        chunks = _to_host([item.values for item in items])
        for item, chunk in zip(items, chunks, strict=True):
            size = chunk.size
            if item.kind == "scalar":
                writer.add_scalar(item.step, item.name, float(chunk[0]))
            elif item.kind == "time":
                group, stat = f"{TIME}:{item.name}", time_stat_name(item.name)
                writer.define_group(group, [str(t) for t in range(size)], extend=True)
                writer.define_stats(group, [stat])
                writer.add_stat(item.step, stat, chunk)
            else:
                for stat, row in zip(item.rows, chunk.reshape(len(item.rows), -1), strict=True):
                    writer.add_stat(item.step, stat, row)
        if self.live is not None:
            self.live.observe([(i.step, i.kind, i.name, i.rows, c) for i, c in zip(items, chunks, strict=True)])


def _to_host(tensors: list[torch.Tensor]) -> list[np.ndarray]:
    """Each tensor as a flat float64 array, with one transfer per device (usually one).

    float64: norms of float64 models and scalars logged as float64/int64 keep their value.
    A tensor on another device (a clip's ``tensor(0.)`` on the CPU) costs no sync of its own.
    """
    by_device: dict[torch.device, list[int]] = {}
    for index, tensor in enumerate(tensors):
        by_device.setdefault(tensor.device, []).append(index)
    out: list[np.ndarray] = [np.empty(0)] * len(tensors)
    for indices in by_device.values():
        flat = torch.cat([tensors[i].detach().reshape(-1).to(torch.float64) for i in indices])
        flat = flat.cpu().numpy()
        offset = 0
        for i in indices:
            out[i] = flat[offset : offset + tensors[i].numel()]
            offset += tensors[i].numel()
    return out


__all__ = ["PendingWriter", "run_header"]
