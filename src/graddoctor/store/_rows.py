"""What the writer accepts: every row is checked when it is added, so a commit never fails on one.

A value SQLite cannot store (a step of ``2**63``, a name with a lone surrogate, a payload
that is not JSON) raises ``ValueError`` to the caller of ``add_*`` and is never buffered.
"""

from __future__ import annotations

import json
import operator
from typing import Any

import numpy as np

from ._blob import encode_values
from ._schema import MAX_STEP


def check_step(step: Any) -> int:
    """The step as a Python int that a run file can store.

    Args:
        step: an integer (Python, numpy or a 0-d integer tensor), or an integral float.

    Returns:
        ``int(step)``.

    Raises:
        ValueError: not an integer, negative, or at least ``2**63``.
    """
    if isinstance(step, bool):
        raise ValueError(f"step must be an integer, got {step!r}")
    try:
        value = operator.index(step)
    except TypeError:
        if isinstance(step, float) and step.is_integer():
            value = int(step)
        else:
            raise ValueError(
                f"step must be an integer, got {type(step).__name__} {step!r}"
            ) from None
    if not 0 <= value <= MAX_STEP:
        raise ValueError(f"step must be in [0, 2**63 - 1], got {value}")
    return value


def check_name(name: Any, what: str = "name") -> str:
    """A name SQLite stores as UTF-8 text; ValueError otherwise (not a str, lone surrogates)."""
    if not isinstance(name, str):
        raise ValueError(f"{what} must be a str, got {type(name).__name__} {name!r}")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError as err:
        raise ValueError(f"{what} {name!r} is not valid text ({err.reason})") from None
    return name


def check_scalar(value: Any) -> float | None:
    """None, or the value as a real float (NaN and inf kept); ValueError otherwise."""
    if value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError, OverflowError) as err:
        raise ValueError(f"a scalar must be a real number or None, got {value!r} ({err})") from None


def stat_blob(values: Any, size: int, stat: str) -> bytes:
    """A statistic vector's blob (see ``_blob``), at most ``size`` long (its group's columns)."""
    array = np.asarray(values)
    if array.dtype.kind not in "biuf":
        raise ValueError(f"statistic {stat!r} must be real numbers, got dtype {array.dtype}")
    if array.ndim > 1:
        raise ValueError(f"statistic {stat!r} must be a vector, got shape {array.shape}")
    if array.size > size:
        raise ValueError(f"statistic {stat!r} has {array.size} values for {size} columns")
    return encode_values(array.reshape(-1))


def to_json(value: Any, what: str) -> str:
    """JSON text of ``value`` (unknown objects as ``str``); ValueError if it cannot be encoded."""
    try:
        return json.dumps(value, default=str)
    except (TypeError, ValueError, RecursionError) as err:
        raise ValueError(f"{what} cannot be stored as JSON: {err}") from None
