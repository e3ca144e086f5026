"""Hard constraints of a workload class: data residency and a ceiling on grid intensity.

A filter-only term (``filter_only``: the engine runs it for every class, after every other filter,
and it adds no score); its settings are the class's ``constraints:`` mapping (:class:`Constraints`):

* ``allowedRegions`` / ``allowedZones`` (globs): nodes elsewhere are infeasible, always.
* ``maxIntensity`` (gCO2e/kWh): nodes whose zone's mean forecast intensity over the pod's expected
  run is above the ceiling are infeasible, but only when at least one node at or below it passes
  every other filter, so the ceiling steers pods to cleaner capacity and never strands them.
  A node whose zone has no carbon data is neither filtered for intensity nor counted as cleaner.
"""

from __future__ import annotations

import fnmatch

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from scheduler.terms.base import Context, Term, TermArgs, TermScore


class Constraints(BaseModel):
    """Hard constraints of a class: data residency and a ceiling on grid intensity."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    allowedRegions: list[str] = Field(
        default_factory=list,
        description="Node region label values (globs, e.g. 'eu-*'); empty: any region",
    )
    allowedZones: list[str] = Field(
        default_factory=list,
        description="Grid zone keys (globs, e.g. 'DE', 'SE*'); empty: any zone",
    )
    maxIntensity: float | None = Field(
        default=None,
        gt=0,
        le=2000,
        description="gCO2e/kWh; nodes whose zone is dirtier over the pod's expected run are "
        "filtered out, but only when a cleaner feasible node exists",
    )

    def region_allowed(self, region: str) -> bool:
        return not self.allowedRegions or any(
            fnmatch.fnmatchcase(region, p) for p in self.allowedRegions
        )

    def zone_allowed(self, zone: str | None) -> bool:
        if not self.allowedZones:
            return True
        return zone is not None and any(fnmatch.fnmatchcase(zone, p) for p in self.allowedZones)

    @property
    def residency(self) -> bool:
        return bool(self.allowedRegions or self.allowedZones)


class ConstraintsArgs(TermArgs):
    """The constraints term's settings in a workload class: its ``constraints:`` mapping."""

    constraints: Constraints = Field(default_factory=Constraints)


class ConstraintsFilter(Term[ConstraintsArgs]):
    """Residency and the intensity ceiling as a filter with a reason per rejected node."""

    name = "constraints"
    Args = ConstraintsArgs
    always_filter = True
    filter_only = True

    def filter(
        self, ctx: Context, args: ConstraintsArgs
    ) -> tuple[np.ndarray | None, dict[int, str]]:
        c = args.constraints
        if not c.residency and c.maxIntensity is None:
            return None, {}
        t = ctx.table
        n = len(t)
        klass = ctx.klass
        mask = np.ones(n, dtype=bool)
        reasons: dict[int, str] = {}
        if c.allowedRegions:
            allowed = {r: c.region_allowed(r) for r in dict.fromkeys(t.region)}
            if not all(allowed.values()):
                ok = np.fromiter(map(allowed.__getitem__, t.region), dtype=bool, count=n)
                mask &= ok
                outside = {
                    r: f"region {r or '(no region label)'!r} is outside class {klass!r}'s "
                    f"allowedRegions {c.allowedRegions} (data residency)"
                    for r, yes in allowed.items()
                    if not yes
                }
                region = t.region
                reasons.update((i, outside[region[i]]) for i in np.flatnonzero(~ok).tolist())
        if c.allowedZones:
            for code in np.unique(t.zone).tolist():
                zone = t.zones[code] if code >= 0 else None
                if c.zone_allowed(zone):
                    continue
                rows = np.flatnonzero(t.zone == code).tolist()
                mask[rows] = False
                why = (
                    f"grid zone {zone or '(unknown)'!r} is outside class {klass!r}'s "
                    f"allowedZones {c.allowedZones} (data residency)"
                )
                for i in rows:
                    reasons.setdefault(i, why)
        if c.maxIntensity is not None:
            self._ceiling(ctx, c.maxIntensity, mask, reasons, klass)
        return mask, reasons

    def _ceiling(
        self,
        ctx: Context,
        ceiling: float,
        mask: np.ndarray,
        reasons: dict[int, str],
        klass: str,
    ) -> None:
        t = ctx.table
        kind = ctx.signal
        end = ctx.now_s + ctx.duration_s
        dirty = np.zeros(len(t), dtype=bool)
        clean = np.zeros(len(t), dtype=bool)
        values: dict[int, float] = {}
        for code in np.unique(t.zone).tolist():
            if code < 0:
                continue
            reading = ctx.carbon.mean_intensity(t.zones[code], ctx.now_s, end, kind)
            if reading is None:
                continue
            if reading.g_per_kwh > ceiling:
                dirty |= t.zone == code
                values[code] = reading.g_per_kwh
            else:
                clean |= t.zone == code
        if not dirty.any():
            return
        prior = ctx.feasible
        others = mask if prior is None else (mask & prior)
        if not (others & clean).any():
            note = (
                f"no feasible node is known to be at or below class {klass!r}'s maxIntensity "
                f"{ceiling:g} gCO2e/kWh; none was filtered for intensity"
            )
            if note not in ctx.pod.notes:
                ctx.pod.notes.append(note)
            return
        above = {
            code: f"grid intensity {g:.0f} gCO2e/kWh in zone {t.zones[code]!r} is above class "
            f"{klass!r}'s maxIntensity {ceiling:g} (cleaner feasible nodes exist)"
            for code, g in values.items()
        }
        rows = np.flatnonzero(dirty & mask)
        reasons.update(zip(rows.tolist(), [above[z] for z in t.zone[rows].tolist()], strict=True))
        mask &= ~dirty

    def score(self, ctx: Context, args: ConstraintsArgs) -> TermScore:
        """Neutral (every row 1, no unit): a filter-only term is never scored by the engine."""
        n = len(ctx.table)
        return TermScore(raw=np.zeros(n), normalized=np.ones(n), unit="")
