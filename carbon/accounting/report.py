"""Sustainability reports from the ledger: grouped exports (CSV, Parquet, JSON), SCI, a PNG chart.

A run is attributed to the period and the UTC day in which it *started*. Inventory columns
(``energy_kwh``, ``co2e_location_kg``, ``co2e_market_kg``, ``embodied_kg``) and the scheduling
effect (``counterfactual_kg``, ``avoided_kg``) are separate columns and never summed together.
The tables come from :mod:`carbon.accounting.report_frames`, the chart from
:mod:`carbon.accounting.report_plot`; this module opens the ledger (either backend, read-only, one
snapshot), writes the format and says how many finished pods of the period still await accounting
(:class:`~carbon.accounting.provisional.Backlog`): the ``awaiting_accounting`` field of JSON and
SCI reports, HTTP headers and a CLI line for the others.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from carbon.accounting.ledger import LedgerTarget, describe_target, open_reader, parse_target
from carbon.accounting.provisional import Backlog, backlog
from carbon.accounting.report_frames import aggregate, sci, split_provisional, totals
from carbon.accounting.report_options import (
    CONTENT_TYPES,
    FORMATS,
    GROUP_KEYS,
    SCI_UNITS,
    ReportError,
    ReportOptions,
    parse_group_by,
    parse_time,
)
from carbon.accounting.report_plot import plot_png
from carbon.accounting.store import SUM_COLUMNS
from carbon.clock import wall

__all__ = [
    "CONTENT_TYPES",
    "COUNTERFACTUAL_DEFINITION",
    "FORMATS",
    "GROUP_KEYS",
    "SCI_UNITS",
    "SUM_COLUMNS",
    "Report",
    "ReportError",
    "ReportOptions",
    "build",
    "build_report",
    "parse_group_by",
    "parse_time",
    "render",
]

COUNTERFACTUAL_DEFINITION = (
    "counterfactual_kg: location-based emissions scaled by the ratio of the mean expected "
    "emissions over all feasible candidate nodes (a carbon-unaware scheduler's average choice) to "
    "the expected emissions on the chosen node, and for gated pods by the expected intensity when "
    "first held over that at release; avoided_kg = counterfactual_kg - co2e_location_kg."
)
PROVISIONAL_DEFINITION = (
    "rows with provisional=true are finished pods not accounted yet, estimated from the "
    "placement's power model and the intensity recorded at the decision (all of it counted as "
    "estimated); they are not in totals but in provisional_totals, and the accounted row replaces "
    "them once the pod settles"
)


@dataclass(frozen=True, slots=True)
class Report:
    """A rendered report and the pods of its period that still await accounting."""

    content_type: str
    body: bytes
    backlog: Backlog


def _meta(opts: ReportOptions, ledger: str, now: float, pending: Backlog) -> dict[str, Any]:
    def iso(ts: float | None) -> str | None:
        return None if ts is None else datetime.fromtimestamp(ts, UTC).isoformat()

    meta: dict[str, Any] = {
        "ledger": ledger,
        "from": iso(opts.start),
        "to": iso(opts.end),
        "group_by": list(opts.group_by),
        "attribution": "runs are counted in the period and UTC day in which they started",
        "units": {
            "gpu_hours": "h",
            "energy_kwh": "kWh (facility, incl. PUE)",
            "*_kg": "kgCO2e",
            "estimated_share": "share of co2e_location_kg resting on estimated or missing "
            "intensity data",
        },
        "counterfactual": COUNTERFACTUAL_DEFINITION,
        "awaiting_accounting": pending.to_json(opts.include_provisional),
        "generated_at": iso(now),
    }
    if opts.include_provisional:
        meta["provisional"] = PROVISIONAL_DEFINITION
    return meta


def _records(df: Any) -> list[dict[str, Any]]:
    """Rows as plain dicts (column lists zipped: far faster than ``to_dict`` on big frames)."""
    names = [str(c) for c in df.columns]
    cols = [df[c].tolist() for c in df.columns]
    return [dict(zip(names, row, strict=True)) for row in zip(*cols, strict=True)]


def _encode_json(doc: dict[str, Any], rows: int) -> bytes:
    """Compact JSON (non-finite floats become null); indented when small enough to read."""
    body = msgspec.json.encode(doc)
    return msgspec.json.format(body, indent=1) if rows <= 5000 else body


def _json_doc(frame: Any, meta: dict[str, Any]) -> dict[str, Any]:
    accounted, provisional = split_provisional(frame)
    doc = {**meta, "rows": _records(frame), "totals": totals(accounted)}
    if provisional is not None:
        doc["provisional_totals"] = totals(provisional)
    return doc


def render(
    conn: Any,
    opts: ReportOptions,
    ledger: LedgerTarget,
    *,
    now: float | None = None,
    pending: Backlog | None = None,
) -> bytes:
    """The report in ``opts.format`` as bytes, from an open reader."""
    now = wall() if now is None else now
    if pending is None:
        pending = backlog(conn, opts.settle_after_s, opts.start, opts.end)
    if opts.format == "png":
        return plot_png(conn, opts, now)
    meta = _meta(opts, describe_target(parse_target(ledger)), now, pending)
    if opts.format == "sci":
        frame = sci(conn, opts, now)
        doc = _json_doc(frame, meta)
        doc = {
            "specification": "Software Carbon Intensity, Green Software Foundation "
            "(ISO/IEC 21031:2024): SCI = (E x I + M) / R",
            "functional_unit": opts.sci_unit,
            **doc,
            "units": {
                **meta["units"],
                "E_kwh": "kWh",
                "I_g_per_kwh": "gCO2e/kWh (location-based, energy-weighted mean)",
                "M_g": "gCO2e (embodied, GPU)",
                "R": f"functional units ({opts.sci_unit})",
                "SCI_g_per_unit": f"gCO2e per {opts.sci_unit}",
            },
        }
        return _encode_json(doc, len(frame))
    df = aggregate(conn, opts, now)
    if opts.format == "json":
        return _encode_json(_json_doc(df, meta), len(df))
    table = pa.Table.from_pandas(df, preserve_index=False)
    buf = io.BytesIO()
    if opts.format == "csv":
        pacsv.write_csv(table, buf, pacsv.WriteOptions(quoting_style="needed"))
        return buf.getvalue()
    schema_meta: dict[bytes | str, bytes | str] = dict(table.schema.metadata or {})
    schema_meta[b"lowcarb.report"] = json.dumps(meta).encode()
    pq.write_table(table.replace_schema_metadata(schema_meta), buf)
    return buf.getvalue()


def build(ledger: str | Path, opts: ReportOptions, now: float | None = None) -> Report:
    """Open ``ledger`` read-only (safe while servers write), render the report, count the
    pods awaiting accounting, all from one snapshot."""
    conn = open_reader(ledger)
    now = wall() if now is None else now
    try:
        pending = backlog(conn, opts.settle_after_s, opts.start, opts.end)
        body = render(conn, opts, ledger, now=now, pending=pending)
    finally:
        conn.close()
    return Report(CONTENT_TYPES[opts.format], body, pending)


def build_report(ledger: str | Path, opts: ReportOptions) -> bytes:
    """The report's bytes (see :func:`build`)."""
    return build(ledger, opts).body
