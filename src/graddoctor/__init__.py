"""graddoctor: find, explain and fix vanishing and exploding gradients in PyTorch.

The public API. Data flows one way: probes -> store -> diagnosis -> remedies -> report.
Importing graddoctor never imports matplotlib, rich or typer.
"""

from . import clip, init, theory
from ._version import __version__
from .checkup import checkup
from .diagnosis import Diagnosis, Finding, diagnose
from .experiment import Comparison, TrialResult, compare
from .monitor import Monitor, model_summary
from .monitor.schedules import as_schedule, every_n, log_spaced
from .probes.nonfinite_replay import NonfiniteReport, locate_nonfinite
from .problem import Problem, train_step
from .remedies import REMEDY_IDS, Remedy, available, chain, get_remedy
from .store import Run, RunFileError, RunWriter, open_run

__all__ = [
    "REMEDY_IDS",
    "Comparison",
    "Remedy",
    "TrialResult",
    "available",
    "chain",
    "compare",
    "get_remedy",
    "Diagnosis",
    "Finding",
    "Monitor",
    "NonfiniteReport",
    "checkup",
    "clip",
    "diagnose",
    "init",
    "locate_nonfinite",
    "theory",
    "Problem",
    "Run",
    "RunFileError",
    "RunWriter",
    "__version__",
    "as_schedule",
    "every_n",
    "log_spaced",
    "model_summary",
    "open_run",
    "train_step",
]
