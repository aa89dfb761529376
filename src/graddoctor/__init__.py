"""graddoctor: find, explain and fix vanishing and exploding gradients in PyTorch.

The public API. Data flows one way: probes -> store -> diagnosis -> remedies -> report.
Importing graddoctor never imports matplotlib, rich or typer.
"""

__version__ = "0.1.0"

from . import clip, init, theory  # noqa: E402
from .diagnosis import Diagnosis, Finding, checkup, diagnose  # noqa: E402
from .diagnosis.locate import NonfiniteReport, locate_nonfinite  # noqa: E402
from .experiment import Comparison, TrialResult, compare  # noqa: E402
from .monitor import Monitor, model_summary  # noqa: E402
from .problem import Problem, train_step  # noqa: E402
from .remedies import REMEDY_IDS, Remedy, available, chain, get_remedy  # noqa: E402
from .schedules import as_schedule, every_n, log_spaced  # noqa: E402
from .store import Run, RunFileError, RunWriter, open_run  # noqa: E402

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
