"""Diagnosis: detectors over recorded runs, ``checkup`` on live models, NaN localisation."""

from .checkup import checkup
from .diagnose import diagnose
from .findings import KINDS, SCHEMA, SEVERITIES, Diagnosis, Finding
from .locate import NonfiniteReport, locate_nonfinite

__all__ = ["KINDS", "SCHEMA", "SEVERITIES", "Diagnosis", "Finding", "NonfiniteReport", "checkup", "diagnose",
           "locate_nonfinite"]
