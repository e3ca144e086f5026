"""What ``lowcarb carbon show`` does: current and forecast intensity per zone.

:func:`run_show` builds the carbon cache with the composition root (:func:`scheduler.app.compose`)
from a policy's ``carbon:`` section (or the embedded default's) with ``--provider`` /
``--fallback`` applied, refreshes it once and prints a rich table (``--wide``: every column),
JSON (``--output json``, alias ``--json``) or CSV (``--output csv``).
Exit 0 when every zone got a value from some source of the chain, 1 when some zone got none (that
zone is listed with the reason ``unknown_zone`` and how to fix it), 2 on bad input; ``--policy``
is read with the one policy loader, so a bad policy is reported as ``lowcarb policy validate``
reports it.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer
from pydantic import ValidationError
from rich.markup import escape
from rich.table import Table

from carbon.config import STATIC_NAME, CarbonConfig, ProviderConfig
from carbon.duration import parse_duration
from carbon.gaps import UNKNOWN_ZONE, unknown_zone_message
from carbon.providers.registry import known_types
from carbon.snapshot import CarbonSnapshot
from scheduler.cli.errors import UsageError
from scheduler.cli.inputs import policy_errors
from scheduler.cli.output import Column, Output, csv_text, resolve
from scheduler.cli.output import console as output_console
from scheduler.cli.output import table as output_table


def _fail(option: str, problem: str, fix: str = "", details: list[str] | None = None) -> UsageError:
    """A bad option: raised, it is printed as one ``lowcarb: error:`` line (exit code 2)."""
    return UsageError(option, problem, fix, details=details or ())


def build_config(
    base: CarbonConfig, provider: str | None, fallback: list[str] | None
) -> CarbonConfig:
    """Apply ``--provider`` / ``--fallback`` to the policy's chain."""
    if provider is None and not fallback:
        return base
    declared = {p.name: p for p in base.providers}
    types = known_types()
    names = [provider] if provider else [base.fallback[0]]
    names += [n.strip() for item in fallback or [] for n in item.split(",") if n.strip()]
    providers = list(base.providers)
    for name in names:
        if name in declared or name == STATIC_NAME:
            continue
        if name not in types:
            known = ", ".join(sorted({*declared, *types}))
            option = "--provider" if name == provider else "--fallback"
            raise _fail(option, f"unknown provider {name!r}", f"use one of {known}")
        providers.append(ProviderConfig(name=name, type=name))
        declared[name] = providers[-1]
    chain = list(dict.fromkeys([*names, STATIC_NAME]))
    data = base.model_dump(by_alias=True)
    data["providers"] = [p.model_dump(by_alias=True) for p in providers]
    data["fallback"] = chain
    try:
        return CarbonConfig.model_validate(data)
    except ValidationError as exc:
        lines = [f"carbon.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
        raise _fail("--provider/--fallback", "invalid carbon chain", "", lines) from None


def _zone_result(
    snap: CarbonSnapshot, zone: str, now: float, horizon: float, chain: list[str]
) -> dict[str, Any]:
    reading = snap.reading(zone)
    if reading is None:
        return {
            "zone": zone,
            "value": None,
            "missing": {
                "g_per_kwh": None,
                "source": None,
                "reason": UNKNOWN_ZONE,
                "message": unknown_zone_message(zone, chain),
            },
        }
    out: dict[str, Any] = {
        "zone": zone,
        "value": {
            "g_per_kwh": round(reading.g_per_kwh, 1),
            "source": reading.source,
            "age_s": round(reading.age_s),
            "kind": reading.kind,
            "stale": reading.stale,
        },
    }
    if horizon > 0:
        mean = snap.mean_intensity(zone, now, now + horizon)
        series = snap.forecast(zone)
        best: tuple[float, float] | None = None
        if series is not None and series.values:
            pairs = [
                (v, s)
                for s, e, v in zip(series.starts, series.ends, series.values, strict=True)
                if e > now and s < now + horizon
            ]
            best = min(pairs) if pairs else None
        out["forecast"] = {
            "mean_g_per_kwh": round(mean.g_per_kwh, 1) if mean else None,
            "min_g_per_kwh": round(best[0], 1) if best else None,
            "min_at": best[1] if best else None,
            "points": len(series.values) if series else 0,
        }
    return out


async def _collect(
    policy: Path | None,
    chain: Callable[[CarbonConfig], CarbonConfig],
    zones: list[str],
    horizon: float,
) -> tuple[list[dict[str, Any]], float]:
    from scheduler.app import compose

    try:
        with policy_errors("--policy"):
            parts = compose(policy, zones=zones, carbon=chain, policy_warnings=False)
    except ValueError as exc:  # a provider that cannot be built from its options
        raise _fail("--provider/--fallback", str(exc)) from None
    cache = parts.cache
    try:
        snap = await cache.refresh_once()
        now = cache.clock()
        fallback = cache.config.fallback
        return [_zone_result(snap, z, now, horizon, fallback) for z in zones], now
    finally:
        await parts.stop()


def _age(seconds: int) -> str:
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds / 3600:.1f}h"


def _flat(res: dict[str, Any], now: float) -> dict[str, Any]:
    """One zone as a flat row: the table's and the CSV's cells."""
    val = res["value"]
    if val is None:
        return {"zone": res["zone"], "source": UNKNOWN_ZONE, "reason": UNKNOWN_ZONE}
    row: dict[str, Any] = {"zone": res["zone"], **val, "reason": None}
    fc = res.get("forecast")
    if fc is not None:
        row["fc_mean_g_per_kwh"] = fc["mean_g_per_kwh"]
        row["fc_min_g_per_kwh"] = fc["min_g_per_kwh"]
        row["fc_min_in_s"] = None if fc["min_at"] is None else max(0, int(fc["min_at"] - now))
    return row


def _g(value: float) -> str:
    return f"{value:.0f}"


BASE_COLUMNS = (
    Column("zone", "zone"),
    Column("g_per_kwh", "now", right=True, fmt=_g),
    Column("source", "source"),
    Column("age_s", "age", right=True, fmt=_age),
    Column("kind", "kind", narrow=False, fmt=lambda k: "avg" if k == "average" else "marg"),
    Column("stale", "stale", fmt=lambda s: "[yellow]yes[/yellow]" if s else "no"),
)
FORECAST_COLUMNS = (
    Column("fc_mean_g_per_kwh", "fc mean", right=True, fmt=_g),
    Column("fc_min_g_per_kwh", "fc min", right=True, fmt=_g),
    Column("fc_min_in_s", "min in", right=True, fmt=_age),
)
CSV_ONLY = (Column("reason", "reason"),)


def _columns(horizon: float) -> tuple[Column, ...]:
    return BASE_COLUMNS + (FORECAST_COLUMNS if horizon > 0 else ())


def _table(results: list[dict[str, Any]], horizon: float, now: float, wide: bool = False) -> Table:
    rows = [_flat(res, now) for res in results]
    for row in rows:
        if row["reason"] is not None:
            row["source"] = f"[red]{UNKNOWN_ZONE}[/red]"
    table = output_table("Grid carbon intensity (gCO2e/kWh)", _columns(horizon), rows, wide=wide)
    if horizon > 0:
        table.caption = f"forecast columns: next {horizon / 3600:g}h"
    return table


def run_show(
    policy: Path | None,
    zones: str,
    forecast: str | None,
    provider: str | None,
    fallback: list[str] | None,
    as_json: bool = False,
    *,
    output: Output | None = None,
    wide: bool = False,
) -> None:
    """Show current (and forecast) carbon intensity per zone, with source and age.

    ``policy`` is the ``--policy`` file (None: the embedded default); the other arguments are the
    command's options. Raises :class:`typer.Exit`: 1 when some zone got no value, 2 on bad input.
    """
    zone_list = [z.strip() for z in zones.split(",") if z.strip()]
    if not zone_list:
        raise _fail("--zones", "no zone given", "give zone keys, e.g. --zones DE,FR,GB")
    horizon = 0.0
    if forecast is not None:
        try:
            horizon = parse_duration(forecast)
        except ValueError as exc:
            raise _fail("--forecast", str(exc)) from None
        if not math.isfinite(horizon) or horizon <= 0:
            raise _fail("--forecast", f"{forecast!r} is not positive", "give e.g. 24h")

    def chain(base: CarbonConfig) -> CarbonConfig:
        return build_config(base, provider, fallback)

    fmt = resolve(output, as_json)
    results, now = asyncio.run(_collect(policy, chain, zone_list, horizon))
    if fmt is Output.csv:
        typer.echo(
            csv_text(_columns(horizon) + CSV_ONLY, [_flat(r, now) for r in results]), nl=False
        )
    elif fmt is Output.json:
        payload: dict[str, Any] = {"zones": {}}
        for res in results:
            entry = res["value"] if res["value"] is not None else res["missing"]
            if "forecast" in res:
                entry = {**entry, "forecast": res["forecast"]}
            payload["zones"][res["zone"]] = entry
        typer.echo(json.dumps(payload))
    else:
        console = output_console(wide)
        console.print(_table(results, horizon, now, wide))
        for res in results:
            if res["value"] is None:
                zone, message = escape(res["zone"]), escape(res["missing"]["message"])
                console.print(f"[red]{zone}: {UNKNOWN_ZONE}[/red] {message}")
    if any(res["value"] is None for res in results):
        raise typer.Exit(code=1)
