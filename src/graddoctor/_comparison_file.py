"""Reading ``comparison.json`` back: every field checked, or one error naming the file and the field.

A comparison file is written by :meth:`graddoctor.experiment.Comparison.save`, but it is
only a file: ``graddoctor report`` may be given one that was edited, truncated or
crafted. :func:`read_comparison` checks every field's type and range before anything
ranks or prints it, so a bad file ends in a ``ValueError`` such as
``runs/cmp/comparison.json: trials[2].final_loss must be a number, got str`` instead of a
``TypeError`` deep in the ranking.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

SCHEMA = "graddoctor.comparison/1"
MAX_INTEGER = 2**63 - 1  # steps and step indices, as a run file stores them
# non-finite floats are written as these strings (JSON has no NaN)
NON_FINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (
        _is_int(value)
        or isinstance(value, float)
        or (isinstance(value, str) and value in NON_FINITE)
    )


def _is_str_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _step(value: Any) -> bool:
    return _is_int(value) and 0 <= value <= MAX_INTEGER


STEP_RANGE = f"an integer between 0 and {MAX_INTEGER}"
# field -> (check, what the value must be)
Check = tuple[Callable[[Any], bool], str]
TOP: dict[str, Check] = {
    "problem": (lambda v: isinstance(v, str), "a string"),
    "steps": (lambda v: _step(v) and v > 0, f"an integer between 1 and {MAX_INTEGER}"),
    "seeds": (lambda v: isinstance(v, list) and all(map(_is_int, v)), "a list of integers"),
    "target_loss": (_is_number, "a number"),
    "trials": (lambda v: isinstance(v, list) and len(v) > 0, "a non-empty list"),
}
_FLOAT: Check = (_is_number, "a number")
_OPTIONAL_STEP: Check = (lambda v: v is None or _step(v), f"null or {STEP_RANGE}")
_OPTIONAL_STR: Check = (lambda v: v is None or isinstance(v, str), "a string or null")
_BOOL: Check = (lambda v: isinstance(v, bool), "true or false")
TRIAL: dict[str, Check] = {
    "name": (lambda v: isinstance(v, str), "a string"),
    "remedy": _OPTIONAL_STR,
    "final_loss": _FLOAT,
    "final_loss_spread": _FLOAT,
    "best_loss": _FLOAT,
    "steps_to_target": _OPTIONAL_STEP,
    "diverged": _BOOL,
    "diverged_at": _OPTIONAL_STEP,
    "wall_time": _FLOAT,
    "healthy": _BOOL,
    "findings": (_is_str_list, "a list of strings"),
    "run_paths": (_is_str_list, "a list of strings"),
}
TRIAL_OPTIONAL: dict[str, Check] = {
    "losses": (
        lambda v: (
            isinstance(v, list) and all(isinstance(r, list) and all(map(_is_number, r)) for r in v)
        ),
        "lists of numbers",
    ),
    "error": _OPTIONAL_STR,
}


def _number(value: int | float | str) -> float:
    """A checked number as a float: ``"nan"``/``"inf"``/``"-inf"`` back to floats, a huge
    integer to +-inf."""
    if isinstance(value, str):
        return NON_FINITE[value]
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


def _checked(
    path: Path, owner: str | None, data: dict, fields: dict[str, Check], required: bool
) -> dict:
    """The ``fields`` of ``data``, each checked; ``owner`` names ``data`` in the file."""
    out = {}
    for field, (ok, what) in fields.items():
        name = f"{owner}.{field}" if owner else field
        if field not in data:
            if required:
                raise ValueError(f"{path}: {owner or 'the comparison'} lacks {field}")
            continue
        value = data[field]
        if not ok(value):
            kind = "a " + type(value).__name__ if value is not None else "null"
            raise ValueError(f"{path}: {name} must be {what}, got {kind}")
        out[field] = value
    return out


def read_comparison(path: str | os.PathLike) -> dict[str, Any]:
    """The fields of a saved comparison, each checked; non-finite floats restored.

    Args:
        path: a ``comparison.json`` written by ``Comparison.save``.

    Returns:
        ``{"problem", "steps", "seeds", "target_loss", "trials": [trial fields]}``;
        fields this version does not know are left out.

    Raises:
        OSError: the file cannot be read.
        ValueError: not JSON text, not a comparison, or a field missing or of the wrong
            type or range; the message names the file and the field.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as err:
        raise ValueError(f"{path} is not JSON text: {err}") from None
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not JSON: {err}") from None
    except RecursionError:
        raise ValueError(f"{path} is not JSON a comparison can hold: nested too deeply") from None
    schema = data.get("schema") if isinstance(data, dict) else None
    if schema != SCHEMA:
        found = f"schema {schema!r}" if isinstance(data, dict) else f"a JSON {type(data).__name__}"
        raise ValueError(f"{path} is not a graddoctor comparison ({found})")
    top = _checked(path, None, data, TOP, required=True)
    trials, names = [], set()
    for i, trial in enumerate(top["trials"]):
        owner = f"trials[{i}]"
        if not isinstance(trial, dict):
            raise ValueError(f"{path}: {owner} must be an object, got a {type(trial).__name__}")
        fields = _checked(path, owner, trial, TRIAL, required=True)
        fields |= _checked(path, owner, trial, TRIAL_OPTIONAL, required=False)
        if fields["name"] in names:
            raise ValueError(f"{path}: trial {fields['name']!r} appears twice")
        names.add(fields["name"])
        for field in ("final_loss", "final_loss_spread", "best_loss", "wall_time"):
            fields[field] = _number(fields[field])
        if "losses" in fields:
            fields["losses"] = [[_number(v) for v in run] for run in fields["losses"]]
        trials.append(fields)
    top["trials"] = trials
    top["target_loss"] = _number(top["target_loss"])
    return top
