"""graddoctor: find, explain and fix vanishing and exploding gradients in PyTorch.

The public API. Data flows one way: probes -> monitor -> store -> views -> diagnosis ->
remedies/experiments -> report. Imports follow layers, and a module never imports one of a
higher layer (``tests/test_layers.py`` checks it), low to high:

0. ``_version``, ``_lazy`` (public names imported on first use), ``_paths``, ``_modules``
   (the module taxonomy as type names) and ``_module_types`` (its torch classes),
   ``_foreach`` (grouping and fused norms), ``_exact_norms`` (norms across the float
   range), ``_render_text``, ``_numbers``, ``_windows`` (sliding-window medians),
   ``_findings`` (the Finding type), ``_signals`` (the step-axis detectors as functions
   of arrays, run offline and live);
1. ``probes`` (what is measured; the NaN replay), ``problem``;
2. ``store`` (the run file);
3. ``monitor`` (hooks, schedules, AMP, distributed reduction; writes the store);
4. ``views`` (one read-side view of a run);
5. ``theory``, ``remedies`` (act on models and problems, never read runs);
6. ``diagnosis`` (reads runs, names findings, picks remedies from the registry) and its
   rich rendering ``_render_diagnosis``;
7. ``checkup``, ``experiment`` (with ``_render_comparison``, ``_comparison_file``);
8. ``scenarios``; 9. ``report``; 10. ``integrations``, ``demo``; 11. ``cli``.

``import graddoctor`` is light: each public name is imported on its first use (torch with
the first that needs it), so ``graddoctor --help`` starts without torch, and reading a
recorded run (``show``, ``diagnose``, ``report``) never imports it: the store, the views,
the diagnosis and the remedy registry read names, not torch classes
(``tests/test_cli_reading.py``). Nothing imports matplotlib, rich or typer but the
report's drawing modules and the command line.
"""

from __future__ import annotations

import sys
import types
from typing import TYPE_CHECKING, Any

from ._lazy import lazy_getattr
from ._version import __version__

# public name -> (module, attribute); None: the name is the submodule itself. Nothing is
# imported until a name is first read, so the command line starts without torch.
_PUBLIC: dict[str, tuple[str, str | None]] = {
    "REMEDY_IDS": (".remedies", "REMEDY_IDS"),
    "Comparison": (".experiment", "Comparison"),
    "Remedy": (".remedies", "Remedy"),
    "TrialResult": (".experiment", "TrialResult"),
    "available": (".remedies", "available"),
    "chain": (".remedies", "chain"),
    "compare": (".experiment", "compare"),
    "get_remedy": (".remedies", "get_remedy"),
    "Diagnosis": (".diagnosis", "Diagnosis"),
    "Finding": (".diagnosis", "Finding"),
    "Monitor": (".monitor", "Monitor"),
    "Guard": (".monitor", "Guard"),
    "GuardGaveUp": (".monitor", "GuardGaveUp"),
    "GradDoctorWarning": ("._findings", "GradDoctorWarning"),
    "NonfiniteReport": (".probes.nonfinite_replay", "NonfiniteReport"),
    "checkup": (".checkup", "checkup"),
    "clip": (".clip", None),
    "diagnose": (".diagnosis", "diagnose"),
    "init": (".init", None),
    "locate_nonfinite": (".probes.nonfinite_replay", "locate_nonfinite"),
    "theory": (".theory", None),
    "Problem": (".problem", "Problem"),
    "Run": (".store", "Run"),
    "RunFileError": (".store", "RunFileError"),
    "RunWriter": (".store", "RunWriter"),
    "as_schedule": (".monitor.schedules", "as_schedule"),
    "every_n": (".monitor.schedules", "every_n"),
    "log_spaced": (".monitor.schedules", "log_spaced"),
    "model_summary": (".monitor", "model_summary"),
    "open_run": (".store", "open_run"),
    "train_step": (".problem", "train_step"),
}

if TYPE_CHECKING:  # what type checkers and IDEs see; at run time names resolve on first use
    from . import clip, init, theory
    from ._findings import GradDoctorWarning
    from .checkup import checkup
    from .diagnosis import Diagnosis, Finding, diagnose
    from .experiment import Comparison, TrialResult, compare
    from .monitor import Guard, GuardGaveUp, Monitor, model_summary
    from .monitor.schedules import as_schedule, every_n, log_spaced
    from .probes.nonfinite_replay import NonfiniteReport, locate_nonfinite
    from .problem import Problem, train_step
    from .remedies import REMEDY_IDS, Remedy, available, chain, get_remedy
    from .store import Run, RunFileError, RunWriter, open_run


__getattr__ = lazy_getattr(__name__, globals(), _PUBLIC)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


class _Package(types.ModuleType):
    """graddoctor's module type: importing ``graddoctor.checkup`` keeps the function ``checkup``.

    Python binds a submodule on its package once imported; where a public name is also a
    submodule's name, the public object is bound instead.
    """

    def __setattr__(self, name: str, value: Any) -> None:
        public = _PUBLIC.get(name)
        if (
            public is not None
            and public[1] is not None
            and isinstance(value, types.ModuleType)
            and value.__name__ == f"{__name__}.{name}"
        ):
            value = getattr(value, public[1])
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package

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
