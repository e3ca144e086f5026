"""Hard constraints of a workload class: data residency and a ceiling on grid intensity.

A filter-only term (the engine runs it after every other filter and adds no score):

* ``allowedRegions`` / ``allowedZones`` (globs): nodes elsewhere are infeasible, always.
* ``maxIntensity`` (gCO2e/kWh): nodes whose zone's mean forecast intensity over the pod's expected
  run is above the ceiling are infeasible, but only when at least one node at or below it passes
  every other filter, so the ceiling steers pods to cleaner capacity and never strands them.
  A node whose zone has no carbon data is neither filtered for intensity nor counted as cleaner.
"""

from __future__ import annotations

import numpy as np

from scheduler.terms.base import Context, Term, TermScore, term


@term("constraints")
class Constraints(Term):
    def filter(self, ctx: Context) -> tuple[np.ndarray | None, dict[int, str]]:
        c = ctx.params.get("constraints")
        if c is None or (not c.residency and c.maxIntensity is None):
            return None, {}
        t = ctx.table
        n = len(t)
        klass = ctx.params.get("class", "default")
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
        kind = ctx.params.get("signal", "average")
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
        prior = ctx.params.get("feasible")
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

    def score(self, ctx: Context) -> TermScore:
        """No score: constraints only filter (the engine drops this entry)."""
        n = len(ctx.table)
        return TermScore(raw=np.zeros(n), normalized=np.ones(n), unit="")
