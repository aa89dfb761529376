"""``graddoctor.clip``: gradient clipping (see ``graddoctor.remedies.clip``)."""

from .remedies.clip import *  # noqa: F403
from .remedies.clip import __all__  # noqa: F401
