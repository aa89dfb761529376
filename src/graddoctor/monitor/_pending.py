"""The Monitor's write side: statistics wait on the device, then go to the host in one transfer.

Nothing the Monitor measures during a step leaves the device; each recorded step adds
its statistic blocks, per-time-step gradient norms and tensor scalars here, and
:meth:`PendingWriter.flush` moves all of them to the host with one ``.cpu()``, hands
each row to the run writer under its statistic's name, and commits.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from typing import Any

import torch

from .._version import __version__
from ..probes.statistics import (
    ACTIVATION_STATS,
    MODULES,
    PARAMETER_STATS,
    PARAMETERS,
    TIME,
    StatBlock,
    time_stat_name,
)
from ..probes.structure import model_summary
from ..store import RunWriter
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
    """

    def __init__(
        self,
        path: Any,
        recording: bool,
        commit_every: int = 25,
        commit_seconds: float = 2.0,
        overwrite: bool = False,
    ) -> None:
        self.recording = recording
        options = {
            "commit_every": commit_every,
            "commit_seconds": commit_seconds,
            "overwrite": overwrite,
        }
        self.writer = RunWriter(path, **options) if recording else NullWriter(path)
        self._items: list[_Item] = []
        self._order_saved = False

    def start(self, meta: dict[str, Any], parameters: list[str], modules: list[str]) -> None:
        """Write the run's metadata and declare its parameter and module columns."""
        self.writer.set_meta(meta)
        self.writer.define_group(PARAMETERS, parameters)
        self.writer.define_stats(PARAMETERS, PARAMETER_STATS)
        self.writer.define_group(MODULES, modules)
        self.writer.define_stats(MODULES, ACTIVATION_STATS)

    def scalar(self, step: int, name: str, value: Any) -> None:
        """A float or None (written now) or a one-element tensor (kept for the next transfer)."""
        if isinstance(value, torch.Tensor):
            if value.numel() != 1:
                raise ValueError(
                    f"scalar {name!r} must have one element, got shape {tuple(value.shape)}"
                )
            if self.recording:
                self._items.append(_Item(step, "scalar", name, value.detach().reshape(())))
        else:
            self.writer.add_scalar(step, name, None if value is None else float(value))

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
        if parameters is not None and self.recording:
            self._items.append(
                _Item(step, "stats", PARAMETERS, parameters.values, parameters.names)
            )
        if modules is not None:
            self._items.append(_Item(step, "stats", MODULES, modules.values, modules.names))
            if not self._order_saved and execution_order:
                self.writer.set_meta({"execution_order": execution_order})
                self._order_saved = True
        for module, norms in times.items():
            self._items.append(_Item(step, "time", module, norms))

    def flush(self) -> None:
        """Move everything to the host in one transfer, add it to the run file and commit."""
        if self._items:
            self._write(self.writer)
        self.writer.commit()

    def _write(self, writer: Any) -> None:
        # float64: norms of float64 models and scalars logged as float64/int64 keep their value
        flat = torch.cat(
            [item.values.detach().reshape(-1).to(torch.float64) for item in self._items]
        )
        flat = flat.cpu().numpy()
        offset = 0
        for item in self._items:
            size = item.values.numel()
            chunk = flat[offset : offset + size]
            offset += size
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
        self._items = []


__all__ = ["PendingWriter", "run_header"]
