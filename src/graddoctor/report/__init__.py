"""Figures and reports drawn from a recorded run (the store), never from live hooks.

Exports the figure registry ``FIGURES``, one drawing function per figure kind (named as
the kind), ``save_figure`` and ``figure_to_data_uri``: the names of
``graddoctor.report.figures.__all__``. Reading the registry imports no matplotlib (the
drawing modules are imported on first draw); ``import graddoctor`` imports neither.
"""

from . import figures
from .figures import FIGURES, Figure, figure_to_data_uri, save_figure  # noqa: F401 - re-exported

__all__ = figures.__all__


def __getattr__(name: str):
    """The drawing function of each figure kind, e.g. ``graddoctor.report.gradient_flow``."""
    return getattr(figures, name)
