"""``graddoctor.init``: weight initialisation schemes.

The names and their list live in :mod:`graddoctor.remedies.init`; this module re-exports them.
"""

from graddoctor.remedies import init as _family
from graddoctor.remedies.init import *  # noqa: F403

__all__ = _family.__all__
