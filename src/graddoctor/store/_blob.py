"""How a statistic vector is stored in a run file's ``stats.value`` blob.

float32 (4 bytes a value, as in every run file so far) when every finite value fits
float32 as a normal number or is 0; otherwise float64 (8 bytes a value) followed by
the one-byte tag ``b"d"``, so that a float64 blob is never a multiple of 4 bytes long
and cannot be mistaken for a float32 one, even in a group whose columns grow (time steps).
"""

from __future__ import annotations

import numpy as np

FLOAT64_TAG = b"d"
_FLOAT32 = np.finfo(np.float32)


def encode_values(values: np.ndarray) -> bytes:
    """The blob of a statistic vector: float32 when its finite values fit, else tagged float64."""
    wide = np.ascontiguousarray(values, dtype=np.float64).reshape(-1)
    finite = np.abs(wide[np.isfinite(wide)])
    fits = (finite == 0) | ((finite >= _FLOAT32.tiny) & (finite <= _FLOAT32.max))
    if fits.all():
        return wide.astype(np.float32).tobytes()
    return wide.tobytes() + FLOAT64_TAG


def decode_values(blob: bytes) -> np.ndarray:
    """The vector in a blob written by :func:`encode_values` (float32 or float64)."""
    if len(blob) % 4 == len(FLOAT64_TAG) and blob.endswith(FLOAT64_TAG):
        return np.frombuffer(blob[: -len(FLOAT64_TAG)], dtype=np.float64)
    return np.frombuffer(blob, dtype=np.float32)


__all__ = ["FLOAT64_TAG", "decode_values", "encode_values"]
