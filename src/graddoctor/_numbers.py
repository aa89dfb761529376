"""Numbers as the terminal shows them: three significant digits in as few characters as possible.

A table cell too narrow for ``f"{x:.3g}"`` loses its end, and with it the exponent
(``6.96e-…``). :func:`format_number` writes the exponent without padding or ``+``
(``6.96e-7``) and takes the exponent form when it is shorter than the fixed one
(``1.41e-4`` rather than ``0.000141``).
"""

from __future__ import annotations

import math


def format_number(value: float, digits: int = 3) -> str:
    """``value`` to ``digits`` significant digits, in the shorter of its fixed and exponent forms.

    Args:
        value: a number (ints and bools are written as they are).
        digits: significant digits.

    Returns:
        e.g. ``"0.0286"``, ``"1.41e-4"``, ``"6.96e-7"``, ``"1.23e4"``, ``"nan"``, ``"-inf"``.
    """
    if isinstance(value, (bool, int)):
        return str(value)
    value = float(value)
    if not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    general = _unpadded(f"{value:.{digits}g}")
    if value == 0:
        return general
    mantissa, _, exponent = f"{value:.{digits - 1}e}".partition("e")
    if "." in mantissa:
        mantissa = mantissa.rstrip("0").rstrip(".")
    scientific = f"{mantissa}e{int(exponent)}"
    return scientific if len(scientific) < len(general) else general


def _unpadded(text: str) -> str:
    """``"6.96e-07"`` -> ``"6.96e-7"``, ``"1.23e+04"`` -> ``"1.23e4"``."""
    mantissa, e, exponent = text.partition("e")
    return f"{mantissa}e{int(exponent)}" if e else text
