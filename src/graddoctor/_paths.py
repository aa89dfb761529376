"""The one way graddoctor names a new run file: ``<folder>/<prefix>-YYYYmmdd-HHMMSS-ffffff.gdr``."""

from __future__ import annotations

import datetime as _dt
import os
from pathlib import Path


def run_stamp() -> str:
    """The local time to the microsecond, as used in run file names."""
    return _dt.datetime.now().strftime("%Y%m%d-%H%M%S-%f")


def timestamped_run_path(folder: str | os.PathLike = "runs", prefix: str = "run") -> Path:
    """``<folder>/<prefix>-<time>.gdr``, e.g. ``runs/run-20260102-030405-000006.gdr``."""
    return Path(folder) / f"{prefix}-{run_stamp()}.gdr"
