"""What the framework callbacks share: naming one run file per fit, and the final diagnosis."""

from __future__ import annotations

import warnings
from pathlib import Path

from .._paths import timestamped_run_path
from ..diagnosis import Diagnosis, diagnose
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
