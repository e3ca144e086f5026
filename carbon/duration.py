"""The one duration grammar of lowcarb: every policy field, pod annotation and CLI option.

A duration is a string of numbers with units, largest unit first: ``"45s"``, ``"5m"``, ``"2h"``,
``"1h30m"``, ``"2d"``, ``"250ms"``, ``"1.5h"`` (Go's ``"1h30m0s"`` too). A bare number is an error
everywhere, since ``refresh: 5`` could mean 5 seconds or 5 minutes; the message names the fix.
:data:`Duration` is the pydantic type of every duration field: seconds as a float in Python,
written back as a duration string (so a dumped policy validates again), a string pattern in the
JSON Schema.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal
from typing import Annotated

from pydantic import BeforeValidator, PlainSerializer, WithJsonSchema

_NUMBER = r"\d+(?:\.\d+)?"
# a digit first (not empty), then each unit at most once, largest first; 'm' is not the 'm' of 'ms'
DURATION_PATTERN = (
    rf"^\s*(?=\d)(?:({_NUMBER})\s*d)?\s*(?:({_NUMBER})\s*h)?\s*(?:({_NUMBER})\s*m(?!s))?\s*"
    rf"(?:({_NUMBER})\s*s)?\s*(?:({_NUMBER})\s*ms)?\s*$"
)
_DURATION = re.compile(DURATION_PATTERN)
_BARE = re.compile(rf"^\s*[-+]?{_NUMBER}\s*$")
_UNITS = ((86400, "d"), (3600, "h"), (60, "m"), (1, "s"))
EXAMPLES = ("45s", "5m", "2h", "1h30m", "2d")
_FORMS = "write e.g. '45s', '5m', '2h', '1h30m' or '2d' (units d, h, m, s, ms; largest first)"


def _no_unit(number: str) -> str:
    return f"{number} has no unit; write {number}m or {number}s (a duration such as '5m', '2h')"


def parse_duration(value: object) -> float:
    """Seconds in a duration string; ``ValueError`` in lowcarb's words for anything else.

    Zero is an error too: every duration lowcarb reads (a refresh interval, a timeout, a run time,
    a delay, a window) must be positive.
    """
    if isinstance(value, bool):
        word = "true" if value else "false"
        raise ValueError(f"{word} is not a duration; {_FORMS}")
    if isinstance(value, int | float):
        raise ValueError(_no_unit(f"{value:g}" if isinstance(value, float) else str(value)))
    if value is None:
        raise ValueError(f"the duration is empty; {_FORMS}")
    if not isinstance(value, str):
        raise ValueError(f"a duration is a string such as '5m' (got a {type(value).__name__})")
    if _BARE.match(value):
        raise ValueError(_no_unit(value.strip()))
    match = _DURATION.match(value)
    if match is None:
        raise ValueError(f"{value!r} is not a duration; {_FORMS}")
    d, h, m, s, ms = (float(g) if g else 0.0 for g in match.groups())
    seconds = d * 86400.0 + h * 3600.0 + m * 60.0 + s + ms / 1000.0
    if not math.isfinite(seconds):
        raise ValueError(f"{value!r} is too long; {_FORMS}")
    if seconds <= 0:
        raise ValueError(f"{value!r} is zero; a duration must be positive (e.g. '30m')")
    return seconds


def format_duration(seconds: float) -> str:
    """The duration string of ``seconds``, largest unit first: 5400 -> ``"1h30m"``,
    0.25 -> ``"250ms"``; :func:`parse_duration` reads it back to the same seconds."""
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"{seconds!r} seconds is not a positive duration")
    if seconds != int(seconds):
        millis = seconds * 1000.0
        if seconds < 1 and millis == round(millis):
            return f"{round(millis)}ms"
        return f"{Decimal(repr(float(seconds))):f}s"  # shortest digits that read back the same
    whole, parts = int(seconds), []
    for unit, name in _UNITS:
        count, whole = divmod(whole, unit)
        if count:
            parts.append(f"{count}{name}")
    return "".join(parts)


Duration = Annotated[
    float,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str),
    WithJsonSchema({"type": "string", "pattern": DURATION_PATTERN, "examples": list(EXAMPLES)}),
]
"""A positive duration: seconds in Python, a duration string in YAML, JSON and the schema."""
