"""``lowcarb explain`` (the installed command, its own process) and ``POST /explain`` (the real
server on loopback) give the same per-node answer for the same state: pod, nodes, running pods,
policy (with a time-of-use energy price) and time (``LOWCARB_NOW`` / :func:`carbon.clock.pin`).

Causes of the issue's "gpu_fit norm 0.48 from the CLI, 0.95 from the server" that this pins down:
the node set (the server scores every node it knows; the CLI the NodeList it is given) and the
allocated state (the server counts every bound pod; the CLI only the ``--pods`` it is given, and
the explained pod itself in neither). The GPU term's learned workload (FGD's typical pods) is the
third: the server learns it from the pods kube-scheduler asks it to filter, the CLI from the
``--pods`` it is given. Here the server has filtered the running pods before they were bound, as
kube-scheduler would have; after more traffic (pending pods filtered, never bound) the CLI given
those pods too gives the same answer, and both say which typical workload they used.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from carbon import clock
from scheduler import wire
from scheduler.app import ServeOptions, build_runtime
from scheduler.names import ANN_GPU_MILLI
from tests.support.fakeapi import lowcarb_command
from tests.support.policy import FIXTURES
from tests.support.serve import uvicorn_serving

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
NODES = FIXTURES / "nodes-list.json"
# pending pods kube-scheduler asks about after the running ones: mostly whole 8-GPU nodes, so an
# 8-GPU node left with 4 free GPUs strands them for the typical pod (the default, 1 GPU, does not)
TRAFFIC = [("8", "32", None)] * 9 + [("2", "8", None)] * 4 + [("1", "4", 500)] * 3


@pytest.fixture
def policy(tmp_path: Path) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY)
    return path


def node_names() -> list[str]:
    return [n["metadata"]["name"] for n in json.loads(NODES.read_text())["items"]]


def running() -> list[dict[str, Any]]:
    """The running pods but the explained one (as the CLI does: it is explained as new)."""
    explained = json.loads(POD.read_text())["metadata"]["uid"]
    items = json.loads(RUNNING.read_text())["items"]
    return [p for p in items if p["metadata"]["uid"] != explained]


def traffic() -> list[dict[str, Any]]:
    """Pending pods of the shapes in ``TRAFFIC``, created after the running ones."""
    base = json.loads(POD.read_text())
    pods = []
    for i, (gpus, cpu, milli) in enumerate(TRAFFIC):
        pod = copy.deepcopy(base)
        meta = pod["metadata"]
        meta |= {"name": f"job-{i:02d}", "uid": f"uid-job-{i:02d}"}
        meta["creationTimestamp"] = f"2026-11-28T13:{i:02d}:00Z"
        meta["annotations"] = {ANN_GPU_MILLI: str(milli)} if milli else {}
        resources = pod["spec"]["containers"][0]["resources"]
        resources["limits"] = {"nvidia.com/gpu": gpus}
        resources["requests"] = {"cpu": cpu, "memory": "16Gi", "nvidia.com/gpu": gpus}
        pod["spec"].pop("nodeName", None)
        pod["status"] = {"phase": "Pending"}
        pods.append(pod)
    return pods


async def filter_pods(http: httpx.AsyncClient, pods: list[dict[str, Any]]) -> None:
    """kube-scheduler's filter call for each pod (nodeCacheCapable: node names only)."""
    for pod in pods:
        r = await http.post("/filter", json={"Pod": pod, "NodeNames": node_names()})
        assert r.status_code == 200 and not r.json().get("Error"), r.text


@pytest.fixture
async def server(policy: Path) -> AsyncIterator[str]:
    clock.pin(datetime.fromisoformat(NOW).timestamp())
    runtime = build_runtime(ServeOptions(policy=policy))
    for node in json.loads(NODES.read_text())["items"]:
        runtime.state.upsert_node(wire.decode_node(json.dumps(node).encode()))
    for pod in running():
        runtime.state.upsert_pod(wire.decode_pod(json.dumps(pod).encode()))
    try:
        async with uvicorn_serving(runtime.app) as url:
            async with httpx.AsyncClient(base_url=url, timeout=30) as http:
                await filter_pods(http, running())  # filtered before they were bound
            yield url
    finally:
        clock.reset()


def per_node(answer: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {n["node"]: n for n in answer["nodes"]}


def cli_explain(policy: Path, pods: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """The installed ``lowcarb explain`` in its own process, at the pinned time."""
    args = ["explain", "--pod", str(POD), "--nodes", str(NODES)]
    args += ["--pods", str(pods), "--policy", str(policy), "--offline", *extra]
    env = {**os.environ, "LOWCARB_NOW": NOW}
    out = subprocess.run(
        [*lowcarb_command(), *args], capture_output=True, text=True, timeout=120, env=env
    )
    assert out.returncode == 0, out.stderr
    return out


async def post_explain(server: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=server, timeout=30) as http:
        r = await http.post("/explain", content=POD.read_bytes())
    assert r.status_code == 200, r.text
    answer: dict[str, Any] = r.json()
    return answer


def assert_same(cli: dict[str, Any], served: dict[str, Any]) -> None:
    """The same nodes in the same order, each with the same terms, score and cost arithmetic,
    and the same typical workload."""
    assert cli["workload"] == served["workload"]
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


async def test_cli_and_post_give_the_same_numbers(server: str, policy: Path) -> None:
    served = await post_explain(server)
    cli = json.loads(cli_explain(policy, RUNNING, "--json").stdout)
    assert_same(cli, served)
    # learned from the two running pods the server filtered; the CLI from the same two in --pods
    assert served["workload"]["source"] == "learned" and served["workload"]["pods"] == 2
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


def stranded(answer: dict[str, Any]) -> dict[str, float]:
    return {n["node"]: n["terms"]["gpu_fit"]["raw"] for n in answer["nodes"] if n["feasible"]}


async def test_cli_given_the_traffic_matches_a_server_that_has_seen_it(
    server: str, policy: Path, tmp_path: Path
) -> None:
    before = await post_explain(server)
    async with httpx.AsyncClient(base_url=server, timeout=30) as http:
        await filter_pods(http, traffic())  # pending pods: learned from, never bound
    served = await post_explain(server)
    learned = served["workload"]
    assert learned["source"] == "learned" and learned["pods"] == 2 + len(TRAFFIC)
    top = learned["top"][0]
    assert (top["gpus"], top["gpu_milli"]) == (8, 1000) and top["weight"] > 0.4
    # the traffic changed the GPU term's answer: 4 GPUs left free on an 8-GPU node are now
    # stranded for the typical (8-GPU) pod, while filling the 4-GPU node uses up GPUs that such
    # a pod could never have used
    assert stranded(served) != stranded(before)
    assert stranded(served)["use1-a-gpu"] > 0 > stranded(served)["euc1-a-gpu"]

    # the CLI given only the running pods has not seen the traffic: a different answer ...
    stale = json.loads(cli_explain(policy, RUNNING, "--json").stdout)
    assert stale["workload"] != learned and stranded(stale) != stranded(served)
    # ... given the cluster's pods as kubectl lists them (running and pending), the same one
    pods = tmp_path / "pods.json"
    pods.write_text(json.dumps({"kind": "PodList", "items": [*running(), *traffic()]}))
    assert_same(json.loads(cli_explain(policy, pods, "--json").stdout), served)
    table = cli_explain(policy, pods).stdout
    assert f"learned from {2 + len(TRAFFIC)} pods" in table and "8 GPU" in table
