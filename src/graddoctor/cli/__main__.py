"""``python -m graddoctor.cli``: the ``graddoctor`` command."""

from . import main

main()
