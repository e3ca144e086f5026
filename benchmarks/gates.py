"""Gate controller re-planning cost: 5,000 gated pods x 48 hourly forecast points x up to 4 zones.

Measures CPU seconds (``time.process_time``) of
  * ``plan_batch``: the vectorised planner alone;
  * ``first_plan``: ``GateController.plan`` the first time (parses annotations, decides, queues
    one hold Event per pod, dry run);
  * ``replan``: the same on the next tick (what every forecast refresh costs);
  * ``first_plan_policy`` / ``replan_policy``: the same with the production rules: the policy's
    class (``temporalShift``) per pod and the zones of 1,000 nodes that fit it.
Prints a table, then one JSON line. Target: replan of 5,000 pods under 1 s of CPU.

    .venv/bin/python benchmarks/gates.py [--pods 5000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import structlog

from carbon.clock import wall
from carbon.testing import FixedView
from scheduler import wire
from scheduler.gates.controller import GateController
from scheduler.gates.planner import plan_batch
from scheduler.gates.request import GATE, Request, ShiftRules, parse_request
from scheduler.gates.rules import policy_rules, zones_from_state

HOUR = 3600.0
ZONES = ("DE", "FR", "GB", "US-CAL-CISO")


def series_view(now: float, hours: int = 48, seed: int = 1) -> FixedView:
    """A carbon view over fixed hourly forecasts (diurnal shape + noise, seeded)."""
    rng = np.random.default_rng(seed)
    t = np.arange(hours)
    forecasts: dict[str, list[float]] = {}
    for i, zone in enumerate(ZONES):
        base = 150 + 100 * i
        vals = base + 0.4 * base * np.sin(2 * np.pi * (t + 3 * i) / 24) + rng.normal(0, 10, hours)
        forecasts[zone] = np.maximum(vals, 5).tolist()
    return FixedView.of_forecasts(forecasts, start_s=now, source="bench")


def make_pods(
    n: int, now: float, seed: int = 2
) -> tuple[list[wire.Pod], dict[str, tuple[str, ...]]]:
    rng = np.random.default_rng(seed)
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 60))
    pods: list[wire.Pod] = []
    zones: dict[str, tuple[str, ...]] = {}
    for i in range(n):
        k = int(rng.integers(1, len(ZONES) + 1))
        chosen = tuple(sorted(rng.choice(ZONES, size=k, replace=False).tolist()))
        body = {
            "metadata": {
                "name": f"job-{i}",
                "namespace": "batch",
                "uid": f"uid-{i}",
                "creationTimestamp": created,
                "annotations": {
                    "lowcarb.dev/deadline": f"{int(rng.integers(4, 36))}h",
                    "lowcarb.dev/expected-duration": f"{int(rng.integers(1, 8))}h",
                },
                "labels": {"batch.kubernetes.io/job-name": f"sweep-{i // 4}"},
            },
            "spec": {"schedulingGates": [{"name": GATE}], "containers": [{"name": "m"}]},
        }
        pod = wire.decode_pod(json.dumps(body).encode())
        pods.append(pod)
        zones[pod.metadata.uid] = chosen
    return pods, zones


def make_state(n_nodes: int = 1000) -> Any:
    from scheduler.cluster.state import REGION_LABEL, ClusterState

    state = ClusterState(zone_of=lambda labels: labels.get(REGION_LABEL))
    nodes = []
    for i in range(n_nodes):
        body = {
            "metadata": {
                "name": f"gpu-{i}",
                "resourceVersion": "1",
                "labels": {
                    REGION_LABEL: ZONES[i % len(ZONES)],
                    "nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3",
                    "nvidia.com/gpu.count": "8",
                },
            },
            "status": {"allocatable": {"cpu": "96", "memory": "1Ti", "nvidia.com/gpu": "8"}},
        }
        nodes.append(wire.decode_node(json.dumps(body).encode()))
    state.replace_all(nodes, [])
    state.mark_synced()
    return state


def cpu(fn: Callable[[], Any], repeat: int) -> tuple[float, float]:
    samples, walls = [], []
    for _ in range(repeat):
        c0, w0 = time.process_time(), time.perf_counter()
        fn()
        samples.append(time.process_time() - c0)
        walls.append(time.perf_counter() - w0)
    return statistics.median(samples), statistics.median(walls)


async def main_async(n: int, repeat: int) -> list[dict[str, Any]]:
    structlog.configure(logger_factory=structlog.ReturnLoggerFactory())  # no per-pod log output
    now = float(int(wall() // HOUR) * HOUR)
    view = series_view(now)
    pods, zones = make_pods(n, now)

    def rules(pod: wire.Pod) -> ShiftRules:
        return ShiftRules(max_delay_s=48 * HOUR, min_saving=0.1, zones=zones[pod.metadata.uid])

    results: list[dict[str, Any]] = []
    # the planner alone
    req = [parse_request(p, rules(p), now) for p in pods]
    ok = [r for r in req if isinstance(r, Request)]
    zl = [zones[p.metadata.uid] for p, r in zip(pods, req, strict=True) if isinstance(r, Request)]
    e = np.array([r.earliest for r in ok])
    lat = np.array([r.latest for r in ok])
    d = np.array([r.duration for r in ok])
    ms = np.full(len(ok), 0.1)
    c, w = cpu(lambda: plan_batch(view, zl, e, lat, d, ms), repeat)
    plan = plan_batch(view, zl, e, lat, d, ms)
    results.append({"stage": "plan_batch", "pods": len(ok), "cpu_s": c, "wall_s": w})

    def fresh() -> GateController:
        ctl = GateController(None, lambda: view, rules, dry_run=True, clock=lambda: now)  # type: ignore[arg-type]
        for p in pods:
            ctl._observe(p)
        return ctl

    ctls = [fresh() for _ in range(repeat)]
    it = iter(ctls)
    c, w = cpu(lambda: next(it).plan(now), repeat)
    results.append({"stage": "first_plan", "pods": n, "cpu_s": c, "wall_s": w})
    ctl = ctls[0]
    c, w = cpu(lambda: ctl.plan(now), repeat)
    results.append(
        {
            "stage": "replan",
            "pods": n,
            "cpu_s": c,
            "wall_s": w,
            "held": int(plan.hold.sum()),
            "mean_saving_held": float(plan.saving[plan.hold].mean()) if plan.hold.any() else 0.0,
        }
    )
    # production rules: policy classes and the zones of fitting nodes
    from scheduler.policy.model import Policy

    policy = Policy.model_validate(
        {
            "classes": {
                "batch": {
                    "selector": {"namespaces": ["batch"]},
                    "temporalShift": {"maxDelay": "48h", "minSaving": 0.1},
                }
            }
        }
    )
    state = make_state()
    prod_rules = policy_rules(lambda: policy, zones_from_state(state))

    def fresh_policy() -> GateController:
        ctl = GateController(None, lambda: view, prod_rules, dry_run=True, clock=lambda: now)  # type: ignore[arg-type]
        for p in pods:
            ctl._observe(p)
        return ctl

    one = fresh_policy()
    c, w = cpu(lambda: fresh_policy().plan(now), 1)
    results.append({"stage": "first_plan_policy", "pods": n, "cpu_s": c, "wall_s": w})
    one.plan(now)
    c, w = cpu(lambda: one.plan(now), repeat)
    results.append({"stage": "replan_policy", "pods": n, "cpu_s": c, "wall_s": w})
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    results = asyncio.run(main_async(args.pods, args.repeat))
    print(f"{'stage':<18} {'pods':>6} {'cpu s':>8} {'wall s':>8}  notes")
    for r in results:
        note = ""
        if "held" in r:
            note = f"held {r['held']}, mean expected saving {r['mean_saving_held']:.0%}"
        print(f"{r['stage']:<18} {r['pods']:>6} {r['cpu_s']:>8.3f} {r['wall_s']:>8.3f}  {note}")
    print(json.dumps({"benchmark": "gates", "target_cpu_s": 1.0, "results": results}))


if __name__ == "__main__":
    main()
