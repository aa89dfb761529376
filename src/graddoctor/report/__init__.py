"""Figures and reports drawn from a recorded run (the store), never from live hooks.

Exports the figure registry ``FIGURES``, one drawing function per figure kind (named as
the kind), ``save_figure`` and ``figure_to_data_uri``: the names of
``graddoctor.report.figures.__all__``. Importing ``graddoctor.report`` imports
matplotlib; ``import graddoctor`` does not.
"""

from . import figures
from .figures import *  # noqa: F403 - exactly figures.__all__

__all__ = figures.__all__
