"""graddoctor: find, explain and fix vanishing and exploding gradients in PyTorch.

The public API. Data flows one way: probes -> monitor -> store -> views -> diagnosis ->
remedies/experiments -> report. Imports follow layers, and a module never imports one of a
higher layer (``tests/test_layers.py`` checks it), low to high:

0. ``_version``, ``_paths``, ``_modules`` (the module taxonomy), ``_foreach`` (grouping
   and fused norms), ``_render_text``, ``_numbers``, ``_findings`` (the Finding type),
   ``_signals`` (the step-axis detectors as functions of arrays, run offline and live);
1. ``probes`` (what is measured; the NaN replay), ``problem``;
2. ``store`` (the run file);
3. ``monitor`` (hooks, schedules, AMP, distributed reduction; writes the store);
4. ``views`` (one read-side view of a run);
5. ``theory``, ``remedies`` (act on models and problems, never read runs);
6. ``diagnosis`` (reads runs, names findings, picks remedies from the registry) and its
   rich rendering ``_render_diagnosis``;
7. ``checkup``, ``experiment`` (with ``_render_comparison``, ``_comparison_file``);
8. ``scenarios``; 9. ``report``; 10. ``integrations``, ``demo``; 11. ``cli``.

Importing graddoctor never imports matplotlib, rich or typer.
"""

from . import clip, init, theory
from ._findings import GradDoctorWarning
from ._version import __version__
from .checkup import checkup
from .diagnosis import Diagnosis, Finding, diagnose
from .experiment import Comparison, TrialResult, compare
from .monitor import Guard, GuardGaveUp, Monitor, model_summary
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
    "GradDoctorWarning",
    "Guard",
    "GuardGaveUp",
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
