"""Helpers shared by the e2e scenarios: the test policy, crafted carbon series, ledger reads and
the "every pod lowcarb bound is accounted" check. lowcarb is only reached through files it reads
(policy, CSV series), files it writes (the SQLite ledger, read-only here) and the API server.
"""

from __future__ import annotations

import json
import math
import sqlite3
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.controlplane import SHIPPED_POLICY
from tests.e2e.kubeapi import KubeApi
from tests.e2e.lowcarbproc import Lowcarb
from tests.e2e.objects import gpu_pod, node_of
from tests.e2e.procs import wait_until

DECISION = "lowcarb.dev/decision"
GPU_INDEX = "lowcarb.dev/gpu-index"
GATE = "lowcarb.dev/carbon-window"
#: lowcarb A's --shortlist: filter passes at most 2 feasible nodes (pools have 2 to 9 nodes)
SHORTLIST = 2
SERIES_YEAR = 2020  # file name year of crafted series (replay with shift: false reads timestamps)

# region label -> grid zone for the crafted series (policy carbon.zones)
CRAFTED_ZONES = {
    "e2e-planned": "E2E-PLANNED",
    "e2e-latest": "E2E-LATEST",
    "e2e-fresh": "E2E-FRESH",
}


def write_policy(path: Path, replay_root: Path) -> Path:
    """The shipped default policy with a replay source over ``replay_root`` in front of static.

    Zones without a crafted series (every cloud region) fall through to the static annual means
    (SE-SE3 23, FR 99, DE 482, IN-WE 615 gCO2e/kWh), which have no forecast.
    """
    policy = yaml.safe_load(SHIPPED_POLICY.read_text())
    policy["carbon"] = {
        "providers": [
            {
                "name": "replay",
                "refresh": "15s",
                "options": {"root": str(replay_root), "year": SERIES_YEAR, "shift": False},
            }
        ],
        "fallback": ["replay", "static"],
        "zones": dict(CRAFTED_ZONES),
    }
    path.write_text(yaml.safe_dump(policy, sort_keys=False))
    return path


def write_series(
    root: Path, zone: str, start: float, step_s: float, values: Sequence[float]
) -> Path:
    """An Electricity Maps portal CSV for ``zone``: one row per ``step_s`` from ``start``."""
    folder = root / zone
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{zone}_{SERIES_YEAR}_hourly.csv"
    lines = ["Datetime (UTC),Zone Id,Carbon Intensity gCO₂eq/kWh (LCA)"]
    for i, value in enumerate(values):
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(start + i * step_s))
        lines.append(f"{stamp},{zone},{value:.1f}")
    tmp = path.with_suffix(".tmp")
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


def step_series(
    root: Path,
    zone: str,
    now: float,
    value: Callable[[float], float],
    step_s: float = 20.0,
    before_s: float = 3600.0,
    after_s: float = 4 * 3600.0,
) -> float:
    """Write ``value(t)`` sampled on a ``step_s`` grid around ``now``; returns the grid origin."""
    origin = math.floor((now - before_s) / step_s) * step_s
    n = int((before_s + after_s) / step_s)
    write_series(root, zone, origin, step_s, [value(origin + i * step_s) for i in range(n)])
    return origin


# --- ledger -------------------------------------------------------------------------------------


def placement_rows(ledger: Path) -> dict[str, dict[str, Any]]:
    """``placement`` rows of a lowcarb ledger by pod uid (read-only; the server keeps writing)."""
    return _rows(ledger, "placement")


def gate_rows(ledger: Path) -> dict[str, dict[str, Any]]:
    """``gate`` rows (holds and releases) of a lowcarb ledger by pod uid (read-only)."""
    return _rows(ledger, "gate")


def _rows(ledger: Path, table: str) -> dict[str, dict[str, Any]]:
    if not ledger.exists():
        return {}
    conn = sqlite3.connect(f"file:{ledger}?mode=ro", uri=True, timeout=10)
    try:
        conn.row_factory = sqlite3.Row
        rows = conn.execute(f"SELECT * FROM {table}").fetchall()
    finally:
        conn.close()
    return {str(r["uid"]): dict(r) for r in rows}


# --- objects as lowcarb writes them -------------------------------------------------------------


def bind_as_lowcarb_did(
    api: KubeApi, ns: str, name: str, node: str, milli: int, index: int
) -> None:
    """A sharing pod placed and annotated as lowcarb's bind does (one Binding carrying the
    ``lowcarb.dev/gpu-index`` annotation), by a scheduler nobody runs."""
    pod = api.create_pod(gpu_pod(name, ns, milli=milli, scheduler="nobody"))
    api.post(
        f"/api/v1/namespaces/{ns}/pods/{name}/binding",
        {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {
                "name": name,
                "uid": pod["metadata"]["uid"],
                "annotations": {GPU_INDEX: str(index)},
            },
            "target": {"apiVersion": "v1", "kind": "Node", "name": node},
        },
    )


def decision_of(pod: Mapping[str, Any]) -> dict[str, Any] | None:
    text = (pod.get("metadata", {}).get("annotations") or {}).get(DECISION)
    return json.loads(text) if text else None


def gpu_index_of(pod: Mapping[str, Any]) -> tuple[int, ...]:
    text = (pod.get("metadata", {}).get("annotations") or {}).get(GPU_INDEX, "")
    return tuple(int(p) for p in text.split(",") if p.strip())


def assert_accounted(
    api: KubeApi, ledgers: Iterable[Path], namespace: str, names: Iterable[str], timeout: float = 15
) -> dict[str, dict[str, Any]]:
    """Every named pod is bound, carries lowcarb's decision annotation naming its node, and has
    exactly one ledger placement row for its uid on that node. Returns the pods by name."""
    wanted = sorted(set(names))
    paths = list(ledgers)
    problems: list[str] = []

    def check() -> dict[str, dict[str, Any]] | None:
        problems.clear()
        pods = {p["metadata"]["name"]: p for p in api.pods(namespace)}
        rows: dict[str, dict[str, Any]] = {}
        for path in paths:
            rows.update(placement_rows(path))
        for name in wanted:
            pod = pods.get(name)
            if pod is None:
                problems.append(f"{name}: missing")
                continue
            node, uid = node_of(pod), pod["metadata"]["uid"]
            decision = decision_of(pod)
            if not node:
                problems.append(f"{name}: not bound")
            elif decision is None:
                problems.append(f"{name}: bound to {node} without the {DECISION} annotation")
            elif decision.get("node") != node or decision.get("uid") != uid:
                problems.append(f"{name}: annotation says {decision.get('node')}, bound to {node}")
            row = rows.get(uid)
            if row is None:
                problems.append(f"{name}: no ledger placement row for uid {uid}")
            elif row["node"] != node:
                problems.append(f"{name}: ledger says node {row['node']}, bound to {node}")
        return None if problems else {n: pods[n] for n in wanted}

    try:
        return wait_until(f"ledger rows and decisions of {wanted}", check, timeout, 0.25)
    except TimeoutError:
        raise AssertionError("not accounted: " + "; ".join(problems)) from None


def gpu_load(pods: Iterable[Mapping[str, Any]]) -> dict[tuple[str, int], int]:
    """Milli used per (node, GPU index) by bound sharing pods (from lowcarb.dev/gpu-index)."""
    load: dict[tuple[str, int], int] = {}
    for pod in pods:
        node = node_of(pod)
        if not node:
            continue
        ann = pod["metadata"].get("annotations") or {}
        milli = int(ann.get("lowcarb.dev/gpu-milli", "1000"))
        for idx in gpu_index_of(pod):
            load[(node, idx)] = load.get((node, idx), 0) + milli
    return load


@dataclass
class Session:
    """What the e2e session shares between modules (filled by conftest fixtures)."""

    ledgers: list[Path] = field(default_factory=list)
    #: namespace -> pods bound while no lowcarb was up (no decision/ledger row expected)
    unaccounted: dict[str, set[str]] = field(default_factory=dict)
    namespaces: set[str] = field(default_factory=set)
    timings: dict[str, float] = field(default_factory=dict)


def new_lowcarb(
    request: pytest.FixtureRequest,
    workdir: Path,
    kubeconfig: Path,
    policy: Path,
    name: str,
    session: Session,
) -> Lowcarb:
    """A lowcarb with its own ledger, registered for log tails on failure (not started)."""
    ledger = workdir / f"{name}.sqlite"
    session.ledgers.append(ledger)
    lc = Lowcarb(workdir, kubeconfig, policy=policy, ledger=ledger, name=name)
    request.session.e2e_lowcarbs.append(lc)  # type: ignore[attr-defined]
    return lc
