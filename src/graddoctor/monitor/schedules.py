"""When to record: a schedule is any callable ``step -> bool``."""

from __future__ import annotations

import math
from collections.abc import Callable

Schedule = Callable[[int], bool]


def every_n(n: int, start: int = 0) -> Schedule:
    """Record steps ``start, start + n, start + 2n, ...`` (``n = 0`` records nothing)."""
    if n < 0 or start < 0:
        raise ValueError(f"every_n needs n >= 0 and start >= 0, got n={n}, start={start}")
    if n == 0:
        return lambda step: False
    return lambda step: step >= start and (step - start) % n == 0


def log_spaced(per_decade: int = 10, dense_until: int = 10) -> Schedule:
    """Every step below ``dense_until``, then about ``per_decade`` steps per power of ten.

    Step ``s`` is recorded when ``floor(per_decade * log10(s))`` differs from that of
    ``s - 1``, so long runs stay cheap while the start is seen in detail.
    """
    if per_decade < 1:
        raise ValueError(f"log_spaced needs per_decade >= 1, got {per_decade}")

    def schedule(step: int) -> bool:
        if step < max(dense_until, 1):
            return True
        return math.floor(per_decade * math.log10(step)) != math.floor(
            per_decade * math.log10(step - 1)
        )

    return schedule


def as_schedule(value: int | Schedule | None) -> Schedule:
    """An int ``n`` means every n steps; None or 0 means never; callables pass through."""
    if value is None:
        return every_n(0)
    if callable(value):
        return value
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"a schedule is an int or a callable step -> bool, got {value!r}")
    return every_n(value)
