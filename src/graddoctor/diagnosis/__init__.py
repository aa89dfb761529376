"""Diagnosis: detectors over recorded runs (it only reads records; ``graddoctor.checkup``
trains, ``graddoctor.probes.nonfinite_replay`` replays)."""

from .diagnose import diagnose
from .findings import KINDS, SCHEMA, SEVERITIES, Diagnosis, Finding

__all__ = ["KINDS", "SCHEMA", "SEVERITIES", "Diagnosis", "Finding", "diagnose"]
