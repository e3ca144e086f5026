"""Explain a placement: per node, feasible or why not, the cost arithmetic, and the 0..10 score.

:func:`explain` runs the very engine the extender serves from (same class choice, filters, terms,
prices and quantiser) and returns a JSON-ready dict (:class:`scheduler.api.explain.Explanation`)::

    {"pod": "ns/name", "class": "training", "nodes": [{"node": "n1", "feasible": true,
     "reason": null, "terms": {"carbon": {"raw": 1830.5, "unit": "gCO2e", "normalized": 0.92},
     "gpu_fit": {...}}, "score": 10, "cost": {"zone": "SE", "g_per_kwh": 23.4, "forecast":
     false, "window_start": "...", "window_end": "...", "gpu_watts": 560.0, "pue": 1.2,
     "run_h": 4.0, "kwh": 2.9, "g_co2e": 67.9, "gpu_hours": 4.0, "fill_order_gpus": 0.4,
     "stranded_gpus": 0.0, "scarcity": 0.0, "carbon_per_tonne_usd": 190.0, "gpu_hour_usd": 0.01,
     ..., "carbon_usd": 0.0129, "gpu_usd": 0.04, "stranded_usd": 0.0, "energy_usd": null,
     "cost_usd": 0.0529}}, ...], "carbon_data": {"SE": {"source": "static", "age_s": 0}}}

plus ``class_reason``, ``expected_duration_s``, ``notes`` (annotations ignored, zones without data)
and ``workload``: FGD's typical pods, brought up to date with every pod seen first. A term's
``normalized`` is its 0..1 preference over the feasible nodes. A zone no carbon source knows is
listed in ``carbon_data`` with null values and ``"reason": "unknown_zone"``. Nodes are listed by
score, then by cost (cheapest first), then in the GPU term's order; infeasible ones last.
:func:`render` prints it as a table that fits 80 columns (node, zone, gCO2e, run hours, cost, score;
every column with ``wide``); :func:`node_rows` flattens it for CSV. :func:`explain_router` serves it
over HTTP: ``GET /explain?pod=ns/name`` (cluster mode: the pod is read from the API server, since
the node/pod cache keeps only bound pods' demands) and ``POST /explain`` with a Pod manifest (any
mode); both score against every node the service knows, as ``lowcarb explain`` with its input.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

import msgspec
import numpy as np
from fastapi import APIRouter, Query
from rich.console import Console
from rich.table import Table
from starlette.requests import Request

from carbon.clock import wall
from carbon.gaps import UNKNOWN_ZONE
from carbon.types import CarbonView
from scheduler import wire
from scheduler.api.errors import ApiError, error_responses
from scheduler.api.explain import Explanation, workload_line
from scheduler.cluster.state import ClusterState
from scheduler.cluster.table import NodeTable
from scheduler.demand import DemandError, parse_demand
from scheduler.engine import Engine, EngineStore
from scheduler.policy.classes import ClassChoice
from scheduler.scoring import Evaluation, Pricing
from scheduler.terms.base import TermScore
from scheduler.terms.gpu_fit import GpuFit

UNKNOWN_NODE = "node not in lowcarb's cache (not synced yet, or deleted)"
PodGetter = Callable[[str, str], Awaitable[wire.Pod]]
POD_SCHEMA = "#/components/schemas/Pod"  # the msgspec wire type, as the verbs' bodies use it


class ExplainError(ValueError):
    """A pod that cannot be explained (its requests do not parse); the message names the field."""


def explain(
    engine: Engine,
    pod: wire.Pod,
    table: NodeTable,
    carbon: CarbonView,
    now_s: float,
    *,
    unknown: Sequence[str] = (),
) -> dict[str, Any]:
    """The decision for ``pod`` over the rows of ``table``, as a JSON-ready dict."""
    try:
        demand = parse_demand(pod)
    except DemandError as exc:
        raise ExplainError(str(exc)) from exc
    choice = engine.choose(pod)
    gpu_fit, mode = engine.terms.get("gpu_fit"), str(choice.workload_class.gpuMode)
    if isinstance(gpu_fit, GpuFit):  # every pod seen so far, as lowcarb explain learns them
        gpu_fit.typical(fresh=True)
    no_gpu_term = {"source": "none", "pods": 0, "shapes": 0, "top": [], "gpu_mode": mode}
    ev = engine.evaluate(demand, table, carbon, now_s, klass=choice.name)
    prices = engine.pricing.get(choice.name) or engine.pricing["default"]
    cost = ev.cost.cost if ev.cost is not None else np.full(len(table), np.nan)
    order = sorted(
        range(len(table)),
        key=lambda i: (
            not ev.feasible[i],
            -int(ev.levels[i]),
            -_finite(-float(cost[i])),  # cheapest first among equal scores
            -_finite(float(ev.combined[i])),
            table.names[i],
        ),
    )
    nodes: list[dict[str, Any]] = []
    for i in order:
        feasible = bool(ev.feasible[i])
        terms: dict[str, dict[str, Any]] = {}
        if feasible:
            for name, ts in ev.terms.items():
                terms[name] = {
                    "raw": _num(ts.raw[i]),
                    "unit": ts.unit,
                    "normalized": _num(ts.normalized[i], 4),
                }
        entry: dict[str, Any] = {
            "node": table.names[i],
            "feasible": feasible,
            "reason": None if feasible else ev.reasons.get(i, "infeasible"),
            "terms": terms,
            "score": int(ev.levels[i]),
        }
        if feasible and ev.cost is not None:
            entry["cost"] = _cost_row(ev, table, i, prices, now_s)
            entry["cost"]["forecast"] = _forecast(carbon, entry["cost"], choice, now_s)
        nodes.append(entry)
    for name in unknown:
        nodes.append(
            {"node": name, "feasible": False, "reason": UNKNOWN_NODE, "terms": {}, "score": 0}
        )
    return {
        "pod": f"{pod.metadata.namespace}/{pod.metadata.name}",
        "class": choice.name,
        "nodes": nodes,
        "carbon_data": _carbon_data(ev.terms.get("carbon"), table, carbon, choice),
        "class_reason": choice.reason,
        "expected_duration_s": choice.duration_s,
        "notes": list(ev.notes),
        "workload": gpu_fit.summary(mode) if isinstance(gpu_fit, GpuFit) else no_gpu_term,
    }


def _cost_row(
    ev: Evaluation, table: NodeTable, i: int, prices: Pricing, now_s: float
) -> dict[str, Any]:
    """The cost arithmetic of row ``i``: quantities, prices, each component, the sum (USD)."""
    c = ev.cost
    if c is None:
        return {}
    carbon = ev.terms.get("carbon")

    def detail(key: str) -> float:
        if carbon is None or key not in carbon.detail:
            return math.nan
        return float(carbon.detail[key][i])

    run_h = detail("run_h")
    window = run_h * 3600.0 if math.isfinite(run_h) else 0.0
    energy = c.energy_price is not None and c.energy_usd is not None
    return {
        "zone": table.zones[int(table.zone[i])] if int(table.zone[i]) >= 0 else None,
        "g_per_kwh": _num(detail("intensity"), 1),
        "forecast": False,
        "window_start": _iso(now_s),
        "window_end": _iso(now_s + window),
        "gpu_watts": _num(detail("gpu_watts"), 1),
        "pue": _num(detail("pue"), 3),
        "run_h": _num(run_h),
        "kwh": _num(detail("kwh")),
        "g_co2e": _num(float(carbon.raw[i]) if carbon is not None else math.nan, 1),
        "gpu_hours": _num(c.gpu_hours[i]),
        "stranded_gpus": _num(c.stranded_gpus[i]),
        "fill_order_gpus": _num(c.fill_gpus[i]) if c.fill_gpus is not None else None,
        "scarcity": _num(c.scarcity, 4),
        "long_run_scarcity": _num(c.long_run_scarcity, 4),  # NaN (null) when not priced
        "carbon_per_tonne_usd": _num(prices.carbon_per_tonne, 4),
        "gpu_hour_usd": _num(c.gpu_hour_price, 4),
        "stranded_gpu_hour_usd": _num(c.stranded_hour_price, 4),
        "energy_usd_per_kwh": _num(c.energy_price[i], 4) if c.energy_price is not None else None,
        "carbon_usd": _num(c.carbon_usd[i], 6),
        "gpu_usd": _num(c.gpu_usd[i], 6),
        "stranded_usd": _num(c.stranded_usd[i], 6),
        "energy_usd": _num(c.energy_usd[i], 6) if energy and c.energy_usd is not None else None,
        "cost_usd": _num(c.cost[i], 6),
    }


def _forecast(carbon: CarbonView, cost: dict[str, Any], choice: ClassChoice, now_s: float) -> bool:
    """True when the serving source holds a forecast overlapping the run window (the intensity is
    then its mean where it covers, past its end the zone's long-run value; else the latest)."""
    zone, run_h = cost.get("zone"), cost.get("run_h")
    if zone is None or run_h is None:
        return False
    series = carbon.forecast(zone, choice.workload_class.signal)
    if series is None or not series.starts:
        return False
    return series.starts[0] < now_s + run_h * 3600.0 and series.ends[-1] > now_s


def _iso(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _carbon_data(
    ts: TermScore | None, table: NodeTable, carbon: CarbonView, choice: ClassChoice
) -> dict[str, dict[str, Any]]:
    """Source and age of the intensity used per zone (also zones of infeasible nodes)."""
    used = ts.carbon_data if ts else {}
    out: dict[str, dict[str, Any]] = {}
    kind = choice.workload_class.signal
    for zone in sorted({z for z in table.zone_names() if z is not None}):
        hit = used.get(zone)
        if hit is not None:
            out[zone] = {"source": hit.source, "age_s": _age(hit.age_s), "g_per_kwh": hit.g_per_kwh}
            continue
        reading = carbon.reading(zone, kind)
        if reading is not None:
            out[zone] = {
                "source": reading.source,
                "age_s": _age(reading.age_s),
                "g_per_kwh": round(reading.g_per_kwh, 1),
            }
        else:
            out[zone] = {"source": None, "age_s": None, "g_per_kwh": None, "reason": UNKNOWN_ZONE}
    return out


def _age(seconds: float) -> int | float:
    return round(seconds) if seconds >= 10 or seconds == int(seconds) else round(seconds, 1)


def _finite(x: float) -> float:
    return float(x) if math.isfinite(x) else -math.inf


def _num(x: Any, digits: int = 3) -> float | None:
    """Rounded to ``digits`` decimals, or 4 significant digits for small values; None for NaN."""
    value = float(x)
    if not np.isfinite(value):
        return None
    if value != 0.0 and abs(value) < 10.0 ** (1 - digits):
        return float(f"{value:.4g}")
    return round(value, digits)


# --- rendering -------------------------------------------------------------------------------

#: every column of a feasible node, flattened: (key, heading, in the 80-column table)
COLUMNS: tuple[tuple[str, str, bool], ...] = (
    ("node", "node", True),
    ("zone", "zone", True),
    ("g_per_kwh", "g/kWh", False),
    ("forecast", "fcst", False),
    ("gpu_watts", "GPU W", False),
    ("pue", "PUE", False),
    ("run_h", "run h", True),
    ("kwh", "kWh", False),
    ("g_co2e", "gCO2e", True),
    ("gpu_hours", "GPU-h", False),
    ("fill_order_gpus", "fill", False),
    ("stranded_gpus", "strand", False),
    ("scarcity", "scarc", False),
    ("carbon_per_tonne_usd", "$/t", False),
    ("gpu_hour_usd", "$/GPU-h", False),
    ("stranded_gpu_hour_usd", "$/str-h", False),
    ("energy_usd_per_kwh", "$/kWh", False),
    ("carbon_usd", "carbon $", False),
    ("gpu_usd", "GPU $", False),
    ("stranded_usd", "strand $", False),
    ("energy_usd", "energy $", False),
    ("cost_usd", "cost $", True),
    ("score", "score", True),
)


def node_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Every node of an explanation as one flat row: the cost fields, then ``<term>_raw`` /
    ``<term>_norm`` per term (CSV and the table read these)."""
    terms = sorted({t for n in result["nodes"] for t in n.get("terms") or {}})
    keys = [k for k, _, _ in COLUMNS if k not in ("node", "score")]
    rows = []
    for node in result["nodes"]:
        cost = node.get("cost") or {}
        row: dict[str, Any] = {
            "node": node["node"],
            "feasible": node["feasible"],
            "score": node.get("score"),
            "reason": node.get("reason"),
        }
        for key in (*keys, "window_start", "window_end"):
            row[key] = cost.get(key)
        for name in terms:
            term = (node.get("terms") or {}).get(name) or {}
            row[f"{name}_raw"] = term.get("raw")
            row[f"{name}_norm"] = term.get("normalized")
        rows.append(row)
    return rows


def _cell(key: str, value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, str):
        return value
    if key == "score":
        return str(value)
    if key.endswith("_usd") and key != "carbon_per_tonne_usd":
        return f"{value:.4g}"
    return f"{value:,.4g}" if abs(value) < 1e4 else f"{value:,.0f}"


def render(result: dict[str, Any], console: Console, *, wide: bool = False) -> None:
    """Print ``result``: a header (class, run, prices), the feasible nodes best first (node,
    zone, gCO2e, run hours, cost, score; every column with ``wide``), why the others failed,
    then the carbon data used and the notes."""
    head = f"[bold]{result['pod']}[/] class [bold]{result['class']}[/] ({result['class_reason']})"
    hours = result["expected_duration_s"] / 3600.0
    console.print(f"{head}, expected run {hours:g} h")
    if result.get("workload"):
        console.print(workload_line(result["workload"]), style="dim")
    feasible = [n for n in result["nodes"] if n["feasible"]]
    costed = [n for n in feasible if n.get("cost")]
    if costed:
        c = costed[0]["cost"]
        energy = "" if c["energy_usd_per_kwh"] is None else ", energy by zone"
        console.print(
            f"prices: ${c['carbon_per_tonne_usd']:g}/tCO2e, ${c['gpu_hour_usd']:g}/GPU-h, "
            f"${c['stranded_gpu_hour_usd']:g}/stranded GPU-h (scarcity {c['scarcity']:g})"
            f"{energy}"
        )
        shown = [(k, h) for k, h, narrow in COLUMNS if wide or narrow]
        rows = {r["node"]: r for r in node_rows(result)}
        table = Table(title="cost $ = carbon + GPU time + stranded GPUs + energy")
        for key, heading in shown:
            table.add_column(heading, justify="left" if key in ("node", "zone") else "right")
        for node in costed:
            row = rows[node["node"]]
            table.add_row(*(_cell(k, row.get(k)) for k, _ in shown))
        console.print(table)
    elif not feasible:
        console.print("[red]no feasible node[/]")
    for node in result["nodes"]:
        if not node["feasible"]:
            console.print(f"[dim]not feasible[/] {node['node']}: {node['reason']}")
    if result["carbon_data"]:
        data = Table(title="carbon data")
        for col in ("zone", "gCO2e/kWh", "source", "age"):
            data.add_column(col)
        for zone, d in result["carbon_data"].items():
            g = "-" if d["g_per_kwh"] is None else f"{d['g_per_kwh']:g}"
            age = "-" if d["age_s"] is None else f"{d['age_s']} s"
            source = d["source"] or f"none ({d.get('reason') or UNKNOWN_ZONE})"
            data.add_row(zone, g, str(source), age)
        console.print(data)
    for note in result["notes"]:
        console.print(f"[yellow]note:[/] {note}")


# --- HTTP ------------------------------------------------------------------------------------


class ExplainRuntime(Protocol):
    """What the routes need from a running service (``scheduler.app.Runtime`` has all of it)."""

    state: ClusterState
    store: EngineStore
    sync: Any

    def carbon_view(self) -> CarbonView: ...


def explain_router(
    runtime: ExplainRuntime,
    *,
    get_pod: PodGetter | None = None,
    clock: Callable[[], float] | None = None,
) -> APIRouter:
    """``GET /explain?pod=ns/name`` and ``POST /explain`` (body: a Pod) for ``runtime``.

    ``get_pod`` reads a pod by namespace and name; by default the cluster client of
    ``runtime.sync`` (cluster mode). Without one, GET answers 409 and points to POST. Both answer
    :class:`scheduler.api.explain.Explanation`; errors are :class:`scheduler.api.errors.ApiError`.
    """
    now = clock or wall
    router = APIRouter(tags=["operations"])
    answers: dict[str, Any] = {
        "response_model": Explanation,
        "response_model_exclude_unset": True,  # keys as explain() gives them, none added
    }

    def getter() -> PodGetter | None:
        if get_pod is not None:
            return get_pod
        client = getattr(runtime.sync, "client", None)
        fn = getattr(client, "get_pod", None)
        return fn if callable(fn) else None

    def run(pod: wire.Pod) -> dict[str, Any]:
        engine: Engine = runtime.store.engine()
        table = runtime.state.full_table()
        try:
            result = explain(engine, pod, table, runtime.carbon_view(), now())
        except ExplainError as exc:
            raise ApiError(422, str(exc), field="pod") from None
        node = pod.spec.nodeName
        if node and runtime.state.pod(pod.metadata.uid) is not None:
            result["notes"].append(
                f"the pod is bound to {node}; its own requests are counted there, as they are "
                "for every other pod"
            )
        return result

    @router.get(
        "/explain",
        name="explain",
        summary="Explain a pod's placement, reading the pod from the API server (cluster mode)",
        responses=error_responses(400, 404, 409, 422, 502),
        **answers,
    )
    async def get(
        pod: str = Query(description="namespace/name of the pod", examples=["ml/train-0"]),
    ) -> dict[str, Any]:
        namespace, _, name = pod.partition("/")
        if not namespace or not name or "/" in name:
            message = f"query parameter pod={pod!r}: give namespace/name, e.g. ?pod=ml/job-0"
            raise ApiError(400, message, field="pod")
        fetch = getter()
        if fetch is None:
            message = (
                "GET /explain?pod=ns/name needs cluster mode (lowcarb serve --kubeconfig FILE or "
                "--in-cluster); POST the Pod manifest to /explain instead"
            )
            raise ApiError(409, message)
        try:
            found = await fetch(namespace, name)
        except Exception as exc:
            if int(getattr(exc, "code", 0) or 0) == 404:
                raise ApiError(404, f"pod {pod} not found", field="pod") from None
            message = f"cannot read pod {pod} from the API server: {exc}"
            raise ApiError(502, message, field="pod") from None
        return run(found)

    @router.post(
        "/explain",
        name="explain_manifest",
        summary="Explain the placement of the Pod manifest in the body (any mode)",
        responses=error_responses(400, 422),
        openapi_extra={
            "requestBody": {
                "required": True,
                "description": "A v1.Pod manifest in JSON (the fields lowcarb reads are listed)",
                "content": {"application/json": {"schema": {"$ref": POD_SCHEMA}}},
            }
        },
        **answers,
    )
    async def post(request: Request) -> dict[str, Any]:
        body = await request.body()
        try:
            pod = msgspec.json.decode(body, type=wire.Pod)
        except msgspec.DecodeError as exc:
            message = f"body is not a Pod manifest in JSON: {exc}"
            raise ApiError(400, message, field="body") from None
        return run(pod)

    return router
