"""``lowcarb explain`` (the installed command, its own process) and ``POST /explain`` (the real
server on loopback) give the same per-node answer for the same state: pod, nodes, running pods,
policy (with a time-of-use energy price) and time (``LOWCARB_NOW`` / :func:`carbon.clock.pin`).

Causes of the issue's "gpu_fit norm 0.48 from the CLI, 0.95 from the server" that this pins down:
the node set (the server scores every node it knows; the CLI the NodeList it is given) and the
allocated state (the server counts every bound pod; the CLI only the ``--pods`` it is given, and
the explained pod itself in neither). The GPU term's learned workload is the third: the server
learns from the pods it filters, a CLI run starts from the default workload; both are fresh here.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from carbon import clock
from scheduler import wire
from scheduler.app import ServeOptions, build_runtime
from tests.support.fakeapi import free_port, lowcarb_command
from tests.support.policy import FIXTURES

# 02:00 in Los Angeles: every run (3 h H100, 6 h A100, 20 h L4) starts and ends in the cheap
# window, so a few seconds between the two answers cannot move the time-of-use average
NOW = "2026-01-15T10:00:00Z"
POLICY = """\
apiVersion: lowcarb.dev/v2
kind: Policy
carbon:
  zones: {eu-central: DE, us-east: US-MIDA-PJM, us-west: US-NW-BPAT}
  static: {DE: 400, US-MIDA-PJM: 300, US-NW-BPAT: 100}
prices:
  energy:
    default: 0.1
    zones:
      DE: 0.3
      US-NW-BPAT:
        timezone: America/Los_Angeles
        schedule:
          - {from: "00:00", to: "16:00", price: 0.2}
          - {from: "16:00", to: "21:00", price: 0.45}
          - {from: "21:00", to: "24:00", price: 0.2}
classes:
  training:
    selector: {matchLabels: {app: train}}
    expectedDuration: 4h
"""
RUNNING = FIXTURES / "pods-list-assigned-nonterminal.json"
POD = FIXTURES / "pods-get.json"


@pytest.fixture
def policy(tmp_path: Path) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY)
    return path


@pytest.fixture
async def server(policy: Path) -> AsyncIterator[str]:
    clock.pin(datetime.fromisoformat(NOW).timestamp())
    runtime = build_runtime(ServeOptions(policy=policy))
    for node in json.loads((FIXTURES / "nodes-list.json").read_text())["items"]:
        runtime.state.upsert_node(wire.decode_node(json.dumps(node).encode()))
    explained = json.loads(POD.read_text())["metadata"]["uid"]
    for pod in json.loads(RUNNING.read_text())["items"]:
        if pod["metadata"]["uid"] != explained:  # as the CLI does: the pod is explained as new
            runtime.state.upsert_pod(wire.decode_pod(json.dumps(pod).encode()))
    port = free_port()
    config = uvicorn.Config(runtime.app, host="127.0.0.1", port=port, log_level="error")
    serving = uvicorn.Server(config)
    task = asyncio.create_task(serving.serve())
    for _ in range(500):
        if serving.started:
            break
        await asyncio.sleep(0.01)
    assert serving.started
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        serving.should_exit = True
        await task
        clock.reset()


def per_node(answer: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {n["node"]: n for n in answer["nodes"]}


async def test_cli_and_post_give_the_same_numbers(server: str, policy: Path) -> None:
    async with httpx.AsyncClient(base_url=server, timeout=30) as http:
        r = await http.post("/explain", content=POD.read_bytes())
    assert r.status_code == 200, r.text
    served = r.json()
    args = ["explain", "--pod", str(POD), "--nodes", str(FIXTURES / "nodes-list.json")]
    args += ["--pods", str(RUNNING), "--policy", str(policy), "--offline", "--json"]
    env = {**os.environ, "LOWCARB_NOW": NOW}
    out = subprocess.run(
        [*lowcarb_command(), *args], capture_output=True, text=True, timeout=120, env=env
    )
    assert out.returncode == 0, out.stderr
    cli = json.loads(out.stdout)

    assert [n["node"] for n in cli["nodes"]] == [n["node"] for n in served["nodes"]]
    start = datetime.fromisoformat(NOW).timestamp()
    for name, want in per_node(served).items():
        got = per_node(cli)[name]
        assert got["feasible"] == want["feasible"] and got["score"] == want["score"], name
        assert got["reason"] == want["reason"] and got["terms"] == want["terms"], name
        if not want["feasible"]:
            continue
        mine, theirs = dict(got["cost"]), dict(want["cost"])
        for c in (mine, theirs):  # the same instant, give or take the seconds between the calls
            at = datetime.strptime(c.pop("window_start"), "%Y-%m-%dT%H:%M:%SZ")
            assert abs(at.replace(tzinfo=UTC).timestamp() - start) < 60
            c.pop("window_end")
        assert mine == theirs, name
    by_name = per_node(served)
    # the running L4 pod holds 1 of the L4 node's 4 GPUs: infeasible in both
    assert by_name["usw2-b-gpu"]["reason"] == "needs 4 free GPUs, has 3 of 4"
    # the energy price: flat for DE, the time-of-use cheap window in US-NW-BPAT, the default
    # for US-MIDA-PJM; each node's energy cost is its kWh at that price
    prices = {"euc1-a-gpu": 0.3, "usw2-a-gpu": 0.2, "use1-a-gpu": 0.1}
    for name, usd_per_kwh in prices.items():
        c = by_name[name]["cost"]
        assert c["energy_usd_per_kwh"] == usd_per_kwh
        assert c["energy_usd"] == pytest.approx(c["kwh"] * usd_per_kwh, rel=1e-3)
        parts = c["carbon_usd"] + c["gpu_usd"] + c["stranded_usd"] + c["energy_usd"]
        assert c["cost_usd"] == pytest.approx(parts, rel=1e-4)
