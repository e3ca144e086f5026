"""``lowcarb explain`` and ``/explain``: the JSON shape of issue 5 via the CLI and a real server."""

from __future__ import annotations

import json
import types
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from typer.testing import CliRunner

from scheduler import kube, wire
from scheduler.api.explain import NodeCost
from scheduler.app import Runtime, ServeOptions, build_runtime
from scheduler.cli.main import app as lowcarb
from tests.support.fakeapi import FakeApiServer, Reply
from tests.support.policy import FIXTURES
from tests.support.serve import uvicorn_serving

POLICY = """\
apiVersion: lowcarb.dev/v2
kind: Policy
carbon:
  zones: {eu-central: DE, us-east: US-MIDA-PJM, us-west: US-NW-BPAT}
  static: {DE: 400, US-MIDA-PJM: 300, US-NW-BPAT: 100}
classes:
  training:
    selector: {matchLabels: {app: train}}
    prices: {gpuHourIdle: 0}   # an idle fleet's GPU time free: emissions decide
    expectedDuration: 4h
"""
# The recorded pod e2e/train-h100 asks for 4 GPUs, 8 CPUs and 64 GiB and says
# lowcarb.dev/expected-duration: 6h. CPU + memory: 8 x 4 W + 64 x 0.375 W = 56 W; PUE 1.2.
EXPECTED_G = {
    "usw2-b-gpu": (4 * 60 + 56) * 1.2 * (6 / 0.3) / 1000 * 100,  # L4, 20 h: 710.4 g
    "usw2-a-gpu": (4 * 560 + 56) * 1.2 * (6 / 2.0) / 1000 * 100,  # H100, 3 h: 826.56 g
    "use1-a-gpu": (4 * 320 + 56) * 1.2 * 6 / 1000 * 300,  # A100, 6 h: 2885.76 g
    "euc1-a-gpu": (4 * 320 + 56) * 1.2 * 6 / 1000 * 400,  # A100, 6 h: 3847.68 g
}
NODE_KEYS = {"node", "feasible", "reason", "terms", "score"}
TERM_KEYS = {"raw", "unit", "normalized"}
COST_KEYS = set(NodeCost.model_fields)


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    nodes_yaml = tmp_path / "nodes.yaml"
    nodes_yaml.write_text(yaml.safe_dump(json.loads((FIXTURES / "nodes-list.json").read_text())))
    pod_yaml = tmp_path / "pod.yaml"
    pod_yaml.write_text(yaml.safe_dump(json.loads((FIXTURES / "pods-get.json").read_text())))
    return {
        "policy": policy,
        "nodes_json": FIXTURES / "nodes-list.json",
        "nodes_yaml": nodes_yaml,
        "pod_json": FIXTURES / "pods-get.json",
        "pod_yaml": pod_yaml,
    }


def check_shape(result: dict[str, Any]) -> None:
    assert set(result) == {
        "pod",
        "class",
        "nodes",
        "carbon_data",
        "class_reason",
        "expected_duration_s",
        "notes",
        "workload",
    }
    workload = result["workload"]
    assert set(workload) == {"source", "pods", "shapes", "top", "gpu_mode"}
    assert workload["gpu_mode"] == "fgd" and workload["source"] in ("learned", "default")
    assert workload["shapes"] >= len(workload["top"]) >= 1
    assert sum(s["weight"] for s in workload["top"]) <= 1.0 + 1e-9
    if workload["source"] == "default":  # no pod seen: one whole GPU, FGD's default
        assert workload["pods"] == 0
        assert workload["top"] == [
            {"gpus": 1, "gpu_milli": 1000, "cpu_milli": 0, "models": [], "weight": 1.0}
        ]
    assert result["pod"] == "e2e/train-h100"
    assert result["class"] == "training"
    assert result["expected_duration_s"] == 6 * 3600
    by_name = {n["node"]: n for n in result["nodes"]}
    assert set(by_name) == {
        "euc1-a-gpu",
        "euc1-b-cpu",
        "use1-a-gpu",
        "use1-b-cpu",
        "usw2-a-gpu",
        "usw2-b-gpu",
    }
    for node in result["nodes"]:
        if node["feasible"]:
            assert set(node) == NODE_KEYS | {"cost"}
            assert set(node["cost"]) == COST_KEYS
            assert node["reason"] is None
            assert set(node["terms"]) == {"carbon", "gpu_fit"}
            for term in node["terms"].values():
                assert set(term) == TERM_KEYS
            assert node["terms"]["carbon"]["unit"] == "gCO2e"
            assert node["cost"]["carbon_per_tonne_usd"] == 190.0
            assert node["cost"]["gpu_usd"] == 0.0  # the class prices idle GPU time at 0
        else:
            assert set(node) == NODE_KEYS
            assert node["terms"] == {} and node["score"] == 0
    for name, grams in EXPECTED_G.items():
        assert by_name[name]["terms"]["carbon"]["raw"] == pytest.approx(grams, abs=1e-3)
    for cpu in ("euc1-b-cpu", "use1-b-cpu"):
        assert by_name[cpu]["feasible"] is False
        assert by_name[cpu]["reason"] == "needs 4 GPUs, node has no GPUs"
    # best first: the L4 (least gCO2e) gets 10 and leads; the H100, 16 % more gCO2e, one level
    # less (round(10 x (1 - 0.164)) = 8); the dirtiest feasible node scores 0
    assert result["nodes"][0]["node"] == "usw2-b-gpu" and result["nodes"][0]["score"] == 10
    assert by_name["usw2-a-gpu"]["score"] == 8
    assert by_name["usw2-b-gpu"]["terms"]["carbon"]["normalized"] == 1.0
    assert by_name["euc1-a-gpu"]["terms"]["carbon"]["normalized"] == 0.0
    assert by_name["euc1-a-gpu"]["score"] == 0
    assert [n["feasible"] for n in result["nodes"]] == [True] * 4 + [False] * 2
    assert result["carbon_data"] == {
        "DE": {"source": "static", "age_s": 0, "g_per_kwh": 400.0},
        "US-MIDA-PJM": {"source": "static", "age_s": 0, "g_per_kwh": 300.0},
        "US-NW-BPAT": {"source": "static", "age_s": 0, "g_per_kwh": 100.0},
    }


@pytest.mark.parametrize(("pod", "nodes"), [("pod_json", "nodes_json"), ("pod_yaml", "nodes_yaml")])
def test_cli_json(files: dict[str, Path], pod: str, nodes: str) -> None:
    args = ["explain", "--pod", str(files[pod]), "--nodes", str(files[nodes])]
    result = CliRunner().invoke(lowcarb, [*args, "--policy", str(files["policy"]), "--json"])
    assert result.exit_code == 0, result.output
    check_shape(json.loads(result.stdout))


def test_cli_table(files: dict[str, Path]) -> None:
    args = ["explain", "--pod", str(files["pod_json"]), "--nodes", str(files["nodes_json"])]
    result = CliRunner().invoke(lowcarb, [*args, "--policy", str(files["policy"])])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "e2e/train-h100 class training" in out
    assert out.index("usw2-b-gpu") < out.index("euc1-a-gpu")
    assert "prices: $190/tCO2e, $0/GPU-h" in out
    assert max(len(line) for line in out.splitlines()) <= 80
    for heading in ("node", "zone", "run h", "gCO2e", "cost $", "score"):
        assert heading in out
    assert "GPU W" not in out and "weight" not in out
    wide = CliRunner().invoke(lowcarb, [*args, "--policy", str(files["policy"]), "--wide"])
    assert wide.exit_code == 0, wide.output
    for heading in ("g/kWh", "GPU W", "PUE", "kWh", "GPU-h", "scarc", "$/t", "energy $"):
        assert heading in wide.stdout
    rows = CliRunner().invoke(lowcarb, [*args, "--policy", str(files["policy"]), "-o", "csv"])
    assert rows.exit_code == 0, rows.output
    header = rows.stdout.splitlines()[0].split(",")
    assert {"node", "score", "reason", "kwh", "pue", "gpu_watts", "energy_usd", "cost_usd"} <= set(
        header
    )
    assert "window_start" in header and "carbon_raw" in header
    assert "needs 4 GPUs, node has no GPUs" in out
    assert "carbon data" in out and "US-NW-BPAT" in out


def test_cli_bad_inputs(files: dict[str, Path], tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(
        lowcarb, ["explain", "--pod", str(files["nodes_json"]), "--nodes", str(files["nodes_json"])]
    )
    assert result.exit_code == 2
    assert "expected a Pod manifest (kind: Pod), got 'NodeList'" in result.stderr
    bad_policy = tmp_path / "bad.yaml"
    bad_policy.write_text("apiVersion: lowcarb.dev/v2\nkind: Policy\nclasses: {a: {gpuMode: x}}\n")
    args = ["explain", "--pod", str(files["pod_json"]), "--nodes", str(files["nodes_json"])]
    result = runner.invoke(lowcarb, [*args, "--policy", str(bad_policy)])
    assert result.exit_code == 2
    assert f"{bad_policy}:3:24: classes.a.gpuMode: must be one of" in result.stderr


# --- the real server -------------------------------------------------------------------------


@pytest.fixture
def api() -> Iterator[FakeApiServer]:
    server = FakeApiServer().start()
    server.add(
        "GET",
        "/api/v1/namespaces/e2e/pods/train-h100",
        Reply(200, (FIXTURES / "pods-get.json").read_bytes()),
    )
    server.add(
        "GET",
        "/api/v1/namespaces/e2e/pods/does-not-exist",
        Reply(404, (FIXTURES / "error-404-pod-get.json").read_bytes()),
    )
    yield server
    server.stop()


@pytest.fixture
async def served(files: dict[str, Path]) -> AsyncIterator[tuple[Runtime, str]]:
    """``build_runtime`` (the explain routes included), served by uvicorn on 127.0.0.1."""
    runtime = build_runtime(ServeOptions(policy=files["policy"]))
    nodes = json.loads((FIXTURES / "nodes-list.json").read_text())["items"]
    for node in nodes:
        runtime.state.upsert_node(wire.decode_node(json.dumps(node).encode()))
    async with uvicorn_serving(runtime.app) as url:
        yield runtime, url


async def test_server_get_in_cluster_mode(served: tuple[Runtime, str], api: FakeApiServer) -> None:
    runtime, url = served
    client = kube.KubeClient(kube.KubeConfig(host=api.url, token="t"))
    runtime.sync = types.SimpleNamespace(client=client)  # what cluster mode holds
    try:
        async with httpx.AsyncClient(base_url=url) as http:
            r = await http.get("/explain", params={"pod": "e2e/train-h100"})
            assert r.status_code == 200, r.text
            check_shape(r.json())
            assert [q.path for q in api.seen("GET")] == ["/api/v1/namespaces/e2e/pods/train-h100"]
            assert r.json()["notes"] == []
            # once the watch has counted the bound pod, the answer says so
            runtime.state.upsert_pod(wire.decode_pod((FIXTURES / "pods-get.json").read_bytes()))
            r = await http.get("/explain", params={"pod": "e2e/train-h100"})
            assert r.json()["notes"] == [
                "the pod is bound to usw2-a-gpu; its own requests are counted there, as they are "
                "for every other pod"
            ]
            r = await http.get("/explain", params={"pod": "e2e/does-not-exist"})
            assert r.status_code == 404
            assert r.json() == {
                "error": {
                    "code": "not_found",
                    "message": "pod e2e/does-not-exist not found",
                    "field": "pod",
                }
            }
            r = await http.get("/explain", params={"pod": "train-h100"})
            assert r.status_code == 400
            assert "give namespace/name" in r.json()["error"]["message"]
            assert r.json()["error"]["field"] == "pod"
    finally:
        await client.aclose()


async def test_server_post_and_request_fed_mode(served: tuple[Runtime, str]) -> None:
    _, url = served
    async with httpx.AsyncClient(base_url=url) as http:
        r = await http.get("/explain", params={"pod": "e2e/train-h100"})
        assert r.status_code == 409
        assert "POST the Pod manifest to /explain" in r.json()["error"]["message"]
        r = await http.post("/explain", content=(FIXTURES / "pods-get.json").read_bytes())
        assert r.status_code == 200, r.text
        check_shape(r.json())
        r = await http.post("/explain", content=b"{not json")
        assert r.status_code == 400
        bad = json.loads((FIXTURES / "pods-get.json").read_text())
        bad["spec"]["containers"][0]["resources"]["requests"]["cpu"] = "lots"
        r = await http.post("/explain", content=json.dumps(bad).encode())
        assert r.status_code == 422
        assert "resources.requests['cpu']" in r.json()["error"]["message"]


def test_cli_counts_running_pods_but_not_the_explained_one(files: dict[str, Path]) -> None:
    """The recorded PodList: infer-l4 holds 1 of the L4 node's 4 GPUs; train-h100 itself is
    bound to usw2-a-gpu and is explained as if it were not there yet."""
    args = ["explain", "--pod", str(files["pod_json"]), "--nodes", str(files["nodes_json"])]
    running = FIXTURES / "pods-list-assigned-nonterminal.json"
    result = CliRunner().invoke(
        lowcarb, [*args, "--pods", str(running), "--policy", str(files["policy"]), "--json"]
    )
    assert result.exit_code == 0, result.output
    by_name = {n["node"]: n for n in json.loads(result.stdout)["nodes"]}
    assert by_name["usw2-b-gpu"]["reason"] == "needs 4 free GPUs, has 3 of 4"
    assert by_name["usw2-a-gpu"]["feasible"] is True
    assert by_name["usw2-a-gpu"]["score"] == 10


def test_cli_json_shows_the_cost_arithmetic(files: dict[str, Path], tmp_path: Path) -> None:
    """Each feasible node carries its cost arithmetic and the levels follow cost: with GPU time
    priced, the H100 (3 h x 4 GPUs = 12 GPU-h) beats the L4 (80 GPU-h) despite the L4's fewer
    gCO2e, which the carbon-only class ranks first (check_shape)."""
    policy = tmp_path / "priced.yaml"
    policy.write_text(
        POLICY.replace(
            "    prices: {gpuHourIdle: 0}   # an idle fleet's GPU time free: emissions decide\n", ""
        )
        + "prices: {carbonPerTonne: 190, gpuHourIdle: 0.01}\n"
    )
    args = ["explain", "--pod", str(files["pod_json"]), "--nodes", str(files["nodes_json"])]
    result = CliRunner().invoke(lowcarb, [*args, "--policy", str(policy), "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    by_name = {n["node"]: n for n in out["nodes"]}
    gpu_h = {"usw2-b-gpu": 80.0, "usw2-a-gpu": 12.0, "use1-a-gpu": 24.0, "euc1-a-gpu": 24.0}
    for name, grams in EXPECTED_G.items():
        c = by_name[name]["cost"]
        assert c["scarcity"] == 0.0  # no pods running: an idle fleet
        assert c["long_run_scarcity"] == 0.0  # past 48 h of run: the idle fleet's 14-day mean
        assert c["g_co2e"] == pytest.approx(grams, abs=0.1)
        assert c["gpu_hours"] == pytest.approx(gpu_h[name])
        assert c["carbon_usd"] == pytest.approx(grams * 190e-6, rel=1e-3)
        assert c["cost_usd"] == pytest.approx(grams * 190e-6 + gpu_h[name] * 0.01, rel=1e-3)
        assert c["kwh"] * c["g_per_kwh"] == pytest.approx(grams, rel=1e-3)
        assert c["pue"] == 1.2 and c["energy_usd"] is None and c["energy_usd_per_kwh"] is None
        assert c["forecast"] is False  # static values: no forecast over the window
    assert out["nodes"][0]["node"] == "usw2-a-gpu" and out["nodes"][0]["score"] == 10
    # the next cheapest (the US-East A100, 0.79 $ against 0.28 $) is far dearer: level 0
    assert [by_name[n]["score"] for n in ("usw2-b-gpu", "use1-a-gpu", "euc1-a-gpu")] == [0, 0, 0]
    assert "cost" not in by_name["euc1-b-cpu"]


async def test_cli_and_post_give_the_same_answer(
    served: tuple[Runtime, str], files: dict[str, Path]
) -> None:
    """The same pod, nodes and policy: ``lowcarb explain --json`` and ``POST /explain`` agree on
    every node's terms (raw and normalised), levels and order."""
    _, url = served
    async with httpx.AsyncClient(base_url=url) as http:
        r = await http.post("/explain", content=(FIXTURES / "pods-get.json").read_bytes())
    assert r.status_code == 200, r.text
    args = ["explain", "--pod", str(files["pod_json"]), "--nodes", str(files["nodes_json"])]
    cli = CliRunner().invoke(lowcarb, [*args, "--policy", str(files["policy"]), "--json"])
    assert cli.exit_code == 0, cli.output
    assert _timeless(json.loads(cli.stdout)["nodes"]) == _timeless(r.json()["nodes"])


def _timeless(nodes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The nodes without their run windows' timestamps (the wall clock ticks between calls; see
    test_explain_parity.py for the pinned-clock comparison)."""
    for node in nodes:
        for key in ("window_start", "window_end"):
            (node.get("cost") or {}).pop(key, None)
    return nodes


def test_nodes_of_equal_score_are_listed_by_cost_cheapest_first() -> None:
    """examples/pod.json on examples/nodes.json: three nodes score 0; they are listed by cost,
    not in the GPU term's order (which puts the dearest of them before the cheapest)."""
    from scheduler.cli.explain import run_explain

    examples = Path(__file__).resolve().parents[2] / "examples"
    result = run_explain(examples / "pod.json", examples / "nodes.json", offline=True)
    feasible = [n for n in result["nodes"] if n["feasible"]]
    keys = [(-n["score"], n["cost"]["cost_usd"]) for n in feasible]
    assert keys == sorted(keys)
    tied = [n for n in feasible if n["score"] == feasible[-1]["score"]]
    assert len(tied) >= 2, "no tie to order"
    by_gpu = sorted(tied, key=lambda n: -n["terms"]["gpu_fit"]["normalized"])
    assert [n["node"] for n in by_gpu] != [n["node"] for n in tied]
