"""Diagnosis: detectors over recorded runs (it only reads records; ``graddoctor.checkup``
trains, ``graddoctor.probes.nonfinite_replay`` replays)."""

from .diagnose import diagnose
from .findings import EXIT_CODES, KINDS, SCHEMA, SEVERITIES, STATUSES, Diagnosis, Finding

__all__ = [
    "EXIT_CODES",
    "KINDS",
    "SCHEMA",
    "SEVERITIES",
    "STATUSES",
    "Diagnosis",
    "Finding",
    "diagnose",
]
