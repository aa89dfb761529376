"""The ``graddoctor`` command: a thin typer layer over the library.

It starts without torch: ``--help`` and bad options answer in a fraction of a second, and
each command imports the library in its body, after its options are checked.

The commands live in ``_reading_commands`` (``show``, ``diagnose``, ``plot``, ``report``:
no torch) and ``_training_commands`` (``checkup``, ``compare``, ``run``, ``demo``), the typer
application and its console in ``_app``. Each command checks its options, calls the
library and prints; the printing lives beside it: ``_console`` (the per-layer table), ``_progress`` (progress bars), ``_demo`` (what
``graddoctor demo`` shows) and ``_run_command`` (``graddoctor run``). ``_errors`` turns
every failure into exit 2 and one line, ``_outputs`` checks output paths first and
``_targets`` imports ``PKG.MODULE:FUNCTION`` targets.
"""

from __future__ import annotations

import sys

from ._app import app
from ._errors import EXIT_BAD_INPUT, move_debug_flag
from ._reading_commands import diagnose, plot, report, show
from ._training_commands import checkup, compare, demo, run

__all__ = ["EXIT_BAD_INPUT", "app", "main"]

# registered in the order --help lists them
for command in (show, checkup, diagnose, compare, plot, report):
    app.command()(command)
app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})(run)
app.command()(demo)
del command


def main() -> None:
    """Entry point of the ``graddoctor`` script."""
    try:
        app(args=move_debug_flag(sys.argv[1:]), prog_name="graddoctor")
    except KeyboardInterrupt:
        sys.exit(130)
