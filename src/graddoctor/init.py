"""``graddoctor.init``: weight initialisation schemes (see ``graddoctor.remedies.init``)."""

from .remedies.init import *  # noqa: F403
from .remedies.init import __all__  # noqa: F401
