"""The plausible range of a grid carbon intensity (0..2,000 gCO2e/kWh), as a check and a field type.

The cache rejects provider values outside it; the policy's ``carbon.static`` values and the
``static`` provider's ``values`` option are validated against it; the ledger's config uses it too.
"""

from __future__ import annotations

import math
from typing import Annotated, Final

from pydantic import AfterValidator, WithJsonSchema

MAX_G_PER_KWH: Final = 2000.0


def valid_value(g: float) -> bool:
    """True for a plausible grid intensity (finite, 0..2,000 g/kWh)."""
    return math.isfinite(g) and 0.0 <= g <= MAX_G_PER_KWH


def _check_intensity(value: float) -> float:
    if not valid_value(value):
        raise ValueError(f"{value:g} is out of range; use gCO2e/kWh between 0 and 2000")
    return value


Intensity = Annotated[
    float,
    AfterValidator(_check_intensity),
    WithJsonSchema({"type": "number", "minimum": 0, "maximum": 2000}),
]
"""A grid intensity in gCO2e/kWh, 0..2000."""
