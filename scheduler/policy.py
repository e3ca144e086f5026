"""Policy: the one place platform teams tune lowcarb (pydantic v2, unknown keys rejected).

v1: workload classes with term weights, GPU score mode and expected duration; the power model; the
carbon section. Classes are chosen by the ``lowcarb.dev/class`` annotation, else ``default``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from carbon.energy import PowerModel

DEFAULT_POLICY = Path(__file__).parent / "data" / "default.yaml"
_DURATION = re.compile(
    r"^\s*(?:(\d+(?:\.\d+)?)\s*d)?\s*(?:(\d+(?:\.\d+)?)\s*h)?\s*"
    r"(?:(\d+(?:\.\d+)?)\s*m)?\s*(?:(\d+(?:\.\d+)?)\s*s)?\s*$"
)


def parse_duration(text: str) -> float:
    """Seconds in a duration such as ``"90m"``, ``"1h30m"``, ``"2d"``, ``"45s"``."""
    match = _DURATION.match(text)
    if not text.strip() or match is None or not any(match.groups()):
        raise ValueError(f"{text!r} is not a duration (use e.g. '45s', '30m', '2h', '1h30m', '1d')")
    d, h, m, s = (float(g) if g else 0.0 for g in match.groups())
    return d * 86400 + h * 3600 + m * 60 + s


class WorkloadClass(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    weights: dict[str, float] = Field(default_factory=lambda: {"gpu_fit": 0.5, "carbon": 0.5})
    gpuMode: Literal["fgd", "bestfit", "packing", "spread"] = "fgd"
    expectedDuration: str = "1h"
    signal: Literal["average", "marginal"] = "average"

    @field_validator("weights")
    @classmethod
    def _weights(cls, value: dict[str, float]) -> dict[str, float]:
        for key, w in value.items():
            if w < 0:
                raise ValueError(f"weights.{key}: must be >= 0 (got {w})")
        return value

    @field_validator("expectedDuration")
    @classmethod
    def _duration(cls, value: str) -> str:
        parse_duration(value)
        return value

    @property
    def duration_s(self) -> float:
        return parse_duration(self.expectedDuration)


class Policy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    apiVersion: Literal["lowcarb.dev/v1"] = "lowcarb.dev/v1"
    kind: Literal["Policy"] = "Policy"
    carbon: dict[str, Any] = Field(default_factory=dict)
    power: PowerModel = Field(default_factory=PowerModel)
    classes: list[WorkloadClass] = Field(default_factory=lambda: [WorkloadClass(name="default")])

    @model_validator(mode="after")
    def _classes(self) -> Policy:
        names = [c.name for c in self.classes]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"classes: duplicate class names {dupes}")
        if "default" not in names:
            raise ValueError("classes: a class named 'default' is required")
        return self

    def workload_class(self, name: str) -> WorkloadClass:
        for c in self.classes:
            if c.name == name:
                return c
        return self.workload_class("default")


def load_policy(path: Path | str | None = None) -> Policy:
    """Load and validate a policy file (the embedded default when ``path`` is None)."""
    source = Path(path) if path is not None else DEFAULT_POLICY
    data = yaml.safe_load(source.read_text()) or {}
    return Policy.model_validate(data)
