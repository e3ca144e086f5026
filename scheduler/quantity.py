"""Kubernetes resource quantities ("500m", "16Gi", "1.5", "2e3", "100Mi") parsed exactly.

Values are parsed into :class:`fractions.Fraction` (no float rounding), then converted the way
Kubernetes does: ``milli`` and whole values round *up* (``resource.Quantity.MilliValue`` /
``Value``). Parsed strings are cached: the same few quantity strings repeat across thousands of
nodes and pods, so the hot path pays for a dict lookup.
"""

from __future__ import annotations

import re
from fractions import Fraction
from functools import lru_cache
from math import ceil

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {
    "n": Fraction(1, 10**9),
    "u": Fraction(1, 10**6),
    "m": Fraction(1, 1000),
    "": Fraction(1),
    "k": Fraction(10**3),
    "M": Fraction(10**6),
    "G": Fraction(10**9),
    "T": Fraction(10**12),
    "P": Fraction(10**15),
    "E": Fraction(10**18),
}
_QUANTITY = re.compile(
    r"^(?P<sign>[+-]?)(?P<num>\d+(?:\.\d*)?|\.\d+)"
    r"(?:(?P<bin>Ki|Mi|Gi|Ti|Pi|Ei)|(?P<exp>[eE][+-]?\d+)|(?P<dec>[numkMGTPE]?))$"
)


class QuantityError(ValueError):
    """A string that is not a Kubernetes quantity."""


@lru_cache(maxsize=8192)
def parse_quantity(text: str) -> Fraction:
    """Exact value of a Kubernetes quantity string (``"1.5Gi"`` -> ``Fraction(1610612736)``)."""
    match = _QUANTITY.match(text.strip())
    if match is None:
        raise QuantityError(
            f"{text!r} is not a Kubernetes quantity (examples: '500m', '2', '1.5', '16Gi', '2e3')"
        )
    value = Fraction(match["num"])
    if match["bin"]:
        value *= _BINARY[match["bin"]]
    elif match["exp"]:
        exponent = int(match["exp"][1:])
        if abs(exponent) > 30:
            raise QuantityError(f"{text!r}: exponent out of range")
        value *= Fraction(10) ** exponent
    else:
        value *= _DECIMAL[match["dec"] or ""]
    return -value if match["sign"] == "-" else value


def milli_value(text: str) -> int:
    """Quantity in thousandths, rounded up (CPU "500m" -> 500, "1.5" -> 1500)."""
    return ceil(parse_quantity(text) * 1000)


def int_value(text: str) -> int:
    """Quantity as a whole number, rounded up (memory "1Gi" -> 1073741824, GPUs "4" -> 4)."""
    return ceil(parse_quantity(text))
