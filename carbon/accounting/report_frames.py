"""The tables behind every report: usage summed per group, provisional groups, SCI per group.

Aggregation runs in the ledger's database (:func:`carbon.accounting.store.usage_groups`, over the
``usage`` table indexed by run start), so a million accounted pods report in seconds; pandas only
shapes the result. With ``include_provisional`` the finished pods the accountant has not settled
yet are estimated (:mod:`carbon.accounting.provisional`), grouped the same way and added as rows
with ``provisional`` true, never summed into an accounted row.

SCI follows the Green Software Foundation's Software Carbon Intensity specification
(ISO/IEC 21031:2024): ``SCI = (E x I + M) / R`` with E the energy (kWh), I the location-based
intensity (energy-weighted mean, gCO2e/kWh; the specification excludes market-based measures),
M the embodied emissions (gCO2e) and R the functional unit (a job, a pod or a GPU-hour).
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from carbon.accounting import store
from carbon.accounting.provisional import estimate
from carbon.accounting.records import UsageRecord
from carbon.accounting.report_options import ReportOptions
from carbon.accounting.settings import AccountingPolicy
from carbon.accounting.store import GROUP_SQL, SUM_COLUMNS
from carbon.clock import wall
from carbon.energy import PowerModel

PROVISIONAL = "provisional"


def _col(key: str) -> str:
    return GROUP_SQL[key][1]


def lead_columns(opts: ReportOptions) -> list[str]:
    """The columns naming a group: the keys (``uid`` then ``pod`` for pods), ``provisional``."""
    lead = [_col(k) for k in opts.group_by]
    if "pod" in opts.group_by:
        lead.insert(lead.index("uid") + 1, "pod")
    return [*lead, PROVISIONAL] if opts.include_provisional else lead


def _shape(df: pd.DataFrame, opts: ReportOptions) -> pd.DataFrame:
    for c in (*SUM_COLUMNS, "estimated_kg"):
        df[c] = df[c].astype(float)
    loc = df["co2e_location_kg"]
    df["estimated_share"] = (df["estimated_kg"] / loc.where(loc > 0)).fillna(0.0)
    methods = df["method"].fillna("")
    canonical = {m: ",".join(sorted(set(m.split(",")) - {""})) for m in methods.unique()}
    df["method"] = methods.map(canonical)
    return df


def _ordered(df: pd.DataFrame, opts: ReportOptions) -> pd.DataFrame:
    ordered = [*lead_columns(opts), "pods", "jobs", *SUM_COLUMNS, "estimated_share", "method"]
    return df[ordered]


def _provisional_groups(records: list[UsageRecord], opts: ReportOptions) -> pd.DataFrame:
    """Estimated rows grouped like :func:`store.usage_groups` groups the accounted ones."""
    base = pd.DataFrame(
        {
            "uid": [r.uid for r in records],
            "namespace": [r.namespace for r in records],
            "class": [r.workload_class for r in records],
            "zone": [r.zone or "" for r in records],
            "node": [r.node for r in records],
            "day": [r.day for r in records],
            "job": [r.job for r in records],
            "pod": [f"{r.namespace}/{r.name}" for r in records],
            **{c: [float(getattr(r, c)) for r in records] for c in SUM_COLUMNS},
            "estimated_kg": [r.estimated_kg for r in records],
            "method": [r.method for r in records],
        }
    )
    keys = [_col(k) for k in opts.group_by]
    if "pod" in opts.group_by:
        return base.assign(pods=1, jobs=1).sort_values(keys, kind="stable")
    sums: dict[str, Any] = {c: (c, "sum") for c in (*SUM_COLUMNS, "estimated_kg")}
    grouped = base.groupby(keys, sort=True, as_index=False).agg(
        pods=("uid", "size"),
        jobs=("job", "nunique"),
        method=("method", lambda s: ",".join(sorted(set(s)))),
        **sums,
    )
    if "job" in opts.group_by:
        grouped["jobs"] = 1
    return grouped


def aggregate(conn: Any, opts: ReportOptions, now: float | None = None) -> pd.DataFrame:
    """One row per group with the export columns; provisional groups too when asked for."""
    names, rows = store.usage_groups(conn, opts.group_by, opts.start, opts.end)
    df = _shape(pd.DataFrame.from_records(rows, columns=names), opts)
    if not opts.include_provisional:
        return _ordered(df, opts)
    records = estimate(
        conn,
        power=opts.power or PowerModel(),
        policy=opts.accounting or AccountingPolicy(),
        now=wall() if now is None else now,
        start=opts.start,
        end=opts.end,
    )
    df[PROVISIONAL] = False
    if records:
        extra = _shape(_provisional_groups(records, opts), opts)
        extra[PROVISIONAL] = True
        df = pd.concat([_ordered(df, opts), _ordered(extra, opts)], ignore_index=True)
        df = df.sort_values(lead_columns(opts), kind="stable", ignore_index=True)
    return _ordered(df, opts)


def totals(df: pd.DataFrame) -> dict[str, float]:
    """Column sums of a grouped frame (the figures every format must agree on)."""
    return {c: float(df[c].sum()) for c in SUM_COLUMNS if c in df}


def split_provisional(df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """(accounted rows, provisional rows or None when the report has no such column)."""
    if PROVISIONAL not in df:
        return df, None
    flag = df[PROVISIONAL].astype(bool)
    return df[~flag], df[flag]


def sci(conn: Any, opts: ReportOptions, now: float | None = None) -> pd.DataFrame:
    """Per group (default: per job): E, I, M, R and SCI = (E x I + M) / R."""
    df = aggregate(conn, opts, now)
    e = df["energy_kwh"]
    carbon_g = df["co2e_location_kg"] * 1000.0
    r = {"job": df["jobs"], "pod": df["pods"], "gpu-hour": df["gpu_hours"]}[opts.sci_unit]
    lead = [_col(k) for k in opts.group_by] + (["pod"] if "pod" in opts.group_by else [])
    out = df[lead + ([PROVISIONAL] if opts.include_provisional else [])].copy()
    out["E_kwh"] = e
    out["I_g_per_kwh"] = (carbon_g / e.where(e > 0)).fillna(0.0)
    out["M_g"] = df["embodied_kg"] * 1000.0
    out["R"] = r.astype(float)
    out["R_unit"] = opts.sci_unit
    out["SCI_g_per_unit"] = ((carbon_g + out["M_g"]) / out["R"].where(out["R"] > 0)).fillna(0.0)
    for c in (*SUM_COLUMNS, "estimated_share", "method"):
        out[c] = df[c]
    return out
