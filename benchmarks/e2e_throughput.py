"""Scheduling throughput and latency through a real kube-scheduler, with and without lowcarb.

Starts the e2e control plane (``tests/e2e/controlplane.py``: etcd, kube-apiserver on loopback),
one ``lowcarb serve`` in cluster mode (shipped default policy, ``--ledger``, the ServiceAccount and
RBAC ``deploy/`` ships) and, one at a time, a kube-scheduler per configuration:

* ``none``: no extender (the baseline of the same run), scoring every node as deploy/ ships it
  (``percentageOfNodesToScore: 100``);
* ``none (sampled)``: no extender at kube-scheduler's own default, ``percentageOfNodesToScore``
  adaptive (it stops looking after 42 % of 1,000 nodes, 10 % of 5,000): what a cluster without
  lowcarb runs, a reference for the shortlist;
* ``filter+prioritize``: the shipped extender entry without ``bindVerb``;
* ``filter+prioritize+bind``: the shipped entry as ``deploy/`` ships it (lowcarb binds).

lowcarb runs with its shipped ``--shortlist`` (filter passes the 100 cheapest feasible nodes, so
kube-scheduler scores only those) unless ``--shortlist N`` says otherwise (0: every node).
All with ``nodeCacheCapable: true`` (names mode) and the shipped client QPS/burst (50/100), which
caps the baseline. For each node count (GPU nodes over five cloud regions) the same set of
one-GPU pods is created as fast as the API server takes them; a watch records when each pod gets
``spec.nodeName``. pods/s = pods / (last bound - first created); latency per pod = bound -
created (client clock, creation request sent). Pods are deleted between configurations and the
configurations run in rounds (``--rounds``), each row the median over rounds. Within a round every
configuration runs between two runs of ``none`` (none, A, none, B, none, ...): its ratio is its
pods/s over the mean of those two, so the machine's drift (other work on it, the API server's
and etcd's state growing through the round) hits both sides, whatever the configuration's place
in the round. ``ratio`` is the median of the rounds' ratios, ``round_ratios`` lists them, and
``round_ratios_vs_first_none`` gives the pairing used before (against the round's first ``none``
only); ``baseline_pods_per_s`` is the median of the bracketing means.

Prints a table, then one JSON line last:
``{"benchmark": "e2e_throughput", "results": [{"nodes", "verbs", "pods_per_s",
"baseline_pods_per_s", "ratio", "round_ratios", "round_ratios_vs_first_none", "latency_p50_ms",
"latency_p99_ms", "served_ms": {"filter", "prioritize", "bind"}, "cpu_ms_per_pod": {"scheduler",
"lowcarb", "apiserver", "etcd", "total"}, "cpu_ratio", "cores_busy"}, ...]}`` (``served_ms``:
lowcarb's mean time to answer each verb, null for a verb not called).

The table adds the CPU time each component spent per pod (from /proc), which other load on a
shared machine inflates far less than wall-clock rates; ``cpu_ratio`` is ``none``'s total CPU
per pod over the row's (what ``ratio`` would be if throughput followed CPU alone, as it does
when the four processes keep every core busy) and ``cores_busy`` their CPU seconds per second.

``--quick``: 500 nodes, 150 pods, one round. Default: 1,000 and 5,000 nodes, 300 pods, two rounds.
Needs the control-plane binaries (``KUBE_BIN_DIR`` or ``../shared/kube-bin``, see ``make e2e``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a script: benchmarks/ is sys.path[0], not the repo
    sys.path.insert(0, str(REPO))

from scheduler.extender.shortlist import DEFAULT_LIMIT  # noqa: E402
from tests.e2e import kubebin  # noqa: E402
from tests.e2e.controlplane import SHIPPED_POLICY, ControlPlane, shipped_extender  # noqa: E402
from tests.e2e.kubeapi import KubeApi  # noqa: E402
from tests.e2e.lowcarbproc import Lowcarb  # noqa: E402
from tests.e2e.objects import gpu_node, gpu_pod  # noqa: E402
from tests.e2e.procs import wait_until  # noqa: E402

REGIONS = ("us-east-1", "us-west-2", "eu-central-1", "eu-north-1", "eu-west-3")
PRODUCTS = ("NVIDIA-A100-SXM4-80GB", "NVIDIA-H100-80GB-HBM3", "NVIDIA-L4")
VERBS = ("none", "none (sampled)", "filter+prioritize", "filter+prioritize+bind")
CPU_PROCS = ("scheduler", "lowcarb", "apiserver", "etcd")
NS = "bench"
POOL = "bench"


def make_nodes(api: KubeApi, start: int, stop: int) -> None:
    nodes = [
        gpu_node(
            f"gpu-{i:05d}",
            region=REGIONS[i % len(REGIONS)],
            product=PRODUCTS[(i // len(REGIONS)) % len(PRODUCTS)],
            pool=POOL,
        )
        for i in range(start, stop)
    ]
    api.create_nodes(nodes, parallel=16)


class BindWatch:
    """Watches the namespace's pods; records when each first shows spec.nodeName.

    The API server closes a watch whose reader falls behind (its cacher drops "unresponsive"
    watchers: with pods created by eight threads of this process the reader can lag), so a
    closed stream is resumed from the last resourceVersion seen, or relisted after a 410."""

    def __init__(self, api: KubeApi) -> None:
        self.api = api
        self.bound: dict[str, float] = {}
        self.resumed = 0
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(self._list(),), daemon=True)
        self._thread.start()
        self._ready.wait(10)

    def _list(self) -> str:
        """Record the pods bound already (now: they were bound while no watch ran); list RV."""
        listed = self.api.get(f"/api/v1/namespaces/{NS}/pods")
        now = time.monotonic()
        for pod in listed.get("items", []):
            self._saw(pod, now)
        return str(listed["metadata"]["resourceVersion"])

    def _run(self, rv: str) -> None:
        path = f"/api/v1/namespaces/{NS}/pods"
        timeout = httpx.Timeout(10, read=None)
        while not self._stop.is_set():
            params = {"watch": "1", "resourceVersion": rv, "allowWatchBookmarks": "true"}
            gone = False
            with (
                contextlib.suppress(httpx.HTTPError),
                self.api.http.stream("GET", path, params=params, timeout=timeout) as resp,
            ):
                self._ready.set()
                for line in resp.iter_lines():
                    if self._stop.is_set():
                        return
                    if not line:
                        continue
                    now = time.monotonic()
                    event = json.loads(line)
                    obj = event.get("object", {})
                    if event.get("type") == "ERROR":
                        gone = obj.get("code") == 410
                        break
                    rv = obj.get("metadata", {}).get("resourceVersion") or rv
                    self._saw(obj, now)
            if self._stop.is_set():
                return
            self.resumed += 1
            time.sleep(0.05)  # a server refusing at once is not spun on
            if gone:
                with contextlib.suppress(httpx.HTTPError):
                    rv = self._list()

    def _saw(self, pod: dict[str, Any], now: float) -> None:
        """Record ``now`` as when ``pod`` was bound, if it is and was not seen bound before."""
        name = pod.get("metadata", {}).get("name")
        if pod.get("spec", {}).get("nodeName") and name not in self.bound:
            self.bound[name] = now

    def alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self) -> None:
        self._stop.set()


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process (all threads) from /proc, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


#: the runs of ``none`` before and after a configuration, and the round's first
Bracket = tuple[dict[str, float], dict[str, float], dict[str, float]]


def _bracket(runs: Bracket, key: str) -> float:
    """The baseline of a configuration: the mean of the ``none`` runs just before and after."""
    return (runs[0][key] + runs[1][key]) / 2


def run_config(
    api: KubeApi, scheduler: str, pods: int, tag: str, pids: dict[str, int]
) -> dict[str, float]:
    """Create ``pods`` GPU pods for ``scheduler``; measure throughput, latency and the CPU each
    component spent per pod (a figure that other load on the machine does not inflate much)."""
    watch = BindWatch(api)
    cpu0 = {k: cpu_seconds(pid) for k, pid in pids.items()}
    names = [f"{tag}-{i:04d}" for i in range(pods)]
    created: dict[str, float] = {}

    def create(name: str) -> None:
        created[name] = time.monotonic()
        api.create_pod(gpu_pod(name, NS, scheduler=scheduler, pool=POOL))

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(create, names))
    try:
        wait_until(
            f"{pods} pods bound by {scheduler}",
            lambda: all(n in watch.bound for n in names),
            timeout=max(120.0, pods / 2.0),
            interval=0.05,
        )
    except TimeoutError:
        listed = api.pods(NS)
        bound = sum(1 for p in listed if p["spec"].get("nodeName"))
        alive = watch.alive()
        raise TimeoutError(
            f"{scheduler}: {len(watch.bound)} binds seen by the watch (alive: {alive}), "
            f"{bound} of {len(listed)} pods bound in the API"
        ) from None
    finally:
        watch.stop()
    if watch.resumed:
        print(f"{scheduler}: the pod watch was resumed {watch.resumed} time(s)", file=sys.stderr)
    cpu = {f"cpu_ms_{k}": (cpu_seconds(pid) - cpu0[k]) * 1000 / pods for k, pid in pids.items()}
    first = min(created.values())
    last = max(watch.bound[n] for n in names)
    lat = sorted((watch.bound[n] - created[n]) * 1000 for n in names)
    return {
        **cpu,
        "cpu_total": sum(cpu.values()),
        "create_s": max(created.values()) - first,
        "pods_per_s": pods / (last - first),
        "latency_p50_ms": statistics.median(lat),
        "latency_p99_ms": lat[min(len(lat) - 1, round(0.99 * (len(lat) - 1)))],
    }


SERVED = "lowcarb_request_duration_seconds"
SERVED_VERBS = ("filter", "prioritize", "bind")


def served(lowcarb: Lowcarb) -> dict[str, tuple[float, float]]:
    """lowcarb's own (seconds, calls) per verb so far, from its request-duration histogram."""
    return {
        v: (lowcarb.metric(f"{SERVED}_sum", verb=v), lowcarb.metric(f"{SERVED}_count", verb=v))
        for v in SERVED_VERBS
    }


def served_ms(
    before: dict[str, tuple[float, float]], after: dict[str, tuple[float, float]]
) -> dict[str, float]:
    """Mean milliseconds lowcarb took to answer each verb between two :func:`served` reads
    (NaN for a verb not called): the extender's share of kube-scheduler's serial cycle."""
    out = {}
    for v in SERVED_VERBS:
        calls = after[v][1] - before[v][1]
        out[f"served_ms_{v}"] = (after[v][0] - before[v][0]) * 1000 / calls if calls else math.nan
    return out


def delete_pods(api: KubeApi) -> None:
    api.request("DELETE", f"/api/v1/namespaces/{NS}/pods", params={"gracePeriodSeconds": "0"})
    wait_until("pods deleted", lambda: not api.pods(NS), 120, 0.2)
    time.sleep(2.0)  # the watches of lowcarb and kube-scheduler catch up


def extenders_for(verbs: str, url: str) -> list[dict[str, Any]]:
    if verbs.startswith("none"):
        return []
    return [shipped_extender(url, node_cache_capable=True, bind=verbs.endswith("+bind"))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="500 nodes, 150 pods, one round")
    parser.add_argument("--nodes", type=int, nargs="*", help="node counts (default 1000 5000)")
    parser.add_argument("--pods", type=int, help="pods per configuration (default 300)")
    parser.add_argument("--rounds", type=int, help="rounds of all configurations (default 2)")
    parser.add_argument("--qps", type=float, help="kube-scheduler client QPS (default: shipped)")
    parser.add_argument("--burst", type=int, help="kube-scheduler client burst (default: shipped)")
    parser.add_argument(
        "--shortlist", type=int, help="lowcarb serve --shortlist (default: shipped, 100)"
    )
    parser.add_argument(
        "--verbs",
        nargs="+",
        choices=VERBS,
        default=list(VERBS),
        help="configurations to run (default: all; 'none' always runs, it is the baseline)",
    )
    args = parser.parse_args(argv)
    verbs_run = [v for v in VERBS if v == "none" or v in args.verbs]
    others = [v for v in verbs_run if v != "none"]
    sequence = ["none", *(x for v in others for x in (v, "none"))]  # none, A, none, B, none, ...
    sizes = sorted(args.nodes or ([500] if args.quick else [1000, 5000]))
    pods = args.pods or (150 if args.quick else 300)
    rounds = args.rounds or (1 if args.quick else 2)
    try:
        bin_dir = kubebin.prepare()
    except kubebin.KubeBinMissing as exc:
        print(f"e2e_throughput: {exc}", file=sys.stderr)
        return 2

    from rich.console import Console
    from rich.table import Table

    console = Console(stderr=True)
    results: list[dict[str, Any]] = []
    cpu_rows: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="lowcarb-bench-") as tmp:
        work = Path(tmp)
        plane = ControlPlane(bin_dir, work / "plane")
        lowcarb: Lowcarb | None = None
        try:
            plane.start()
            api = plane.api
            api.ensure_namespace(NS)
            _, token, _ = plane.install_lowcarb_rbac()
            lowcarb = Lowcarb(
                work,
                plane.kubeconfig("lowcarb", token),
                policy=SHIPPED_POLICY,
                ledger=work / "ledger.sqlite",
                extra_args=[] if args.shortlist is None else [f"--shortlist={args.shortlist}"],
            ).start()
            have = 0
            for size in sizes:
                started = time.monotonic()
                make_nodes(api, have, size)
                have = size
                console.log(f"{size} nodes ready in {time.monotonic() - started:.0f}s")
                samples: dict[str, list[dict[str, float]]] = {v: [] for v in verbs_run}
                # each configuration runs between two runs of ``none``: its baseline is their mean
                brackets: dict[str, list[Bracket]] = {v: [] for v in others}
                for r in range(rounds):
                    runs: list[dict[str, float]] = []
                    for step, verbs in enumerate(sequence):
                        name = "bench-" + verbs.replace("+", "-").replace(" (", "-").strip(")")
                        sched = plane.start_scheduler(
                            name,
                            [name],
                            extenders_for(verbs, lowcarb.url),
                            qps=args.qps,
                            burst=args.burst,
                            verbosity=0,
                            percentage=0 if verbs == "none (sampled)" else None,
                        )
                        time.sleep(1.0)  # informers settled
                        assert lowcarb.proc is not None and plane.apiserver and plane.etcd
                        pids = {
                            "scheduler": sched.pid,
                            "lowcarb": lowcarb.proc.pid,
                            "apiserver": plane.apiserver.pid,
                            "etcd": plane.etcd.pid,
                        }
                        before = served(lowcarb)
                        got = run_config(api, name, pods, f"n{size}-r{r}-{step}-{name}", pids)
                        got.update(served_ms(before, served(lowcarb)))
                        plane.stop_scheduler(name)
                        delete_pods(api)
                        samples[verbs].append(got)
                        runs.append(got)
                        console.log(
                            f"{size} nodes, {verbs}: {got['pods_per_s']:.1f} pods/s, p50 "
                            f"{got['latency_p50_ms']:.0f} ms, p99 {got['latency_p99_ms']:.0f} ms"
                        )
                    for i, verbs in enumerate(sequence):
                        if verbs != "none":  # sequence[i - 1] and [i + 1] are none
                            brackets[verbs].append((runs[i - 1], runs[i + 1], runs[0]))
                med = {
                    v: {k: statistics.median(s[k] for s in samples[v]) for k in samples[v][0]}
                    for v in verbs_run
                }
                for verbs in verbs_run:
                    m = med[verbs]
                    cpu = {c: round(m[f"cpu_ms_{c}"], 2) for c in CPU_PROCS}
                    total = sum(m[f"cpu_ms_{c}"] for c in CPU_PROCS)
                    if verbs == "none":
                        pairs = [(s, (s, s, s)) for s in samples["none"]]
                    else:
                        pairs = list(zip(samples[verbs], brackets[verbs], strict=True))
                    base = statistics.median(_bracket(b, "pods_per_s") for _, b in pairs)
                    base_cpu = (
                        total
                        if verbs == "none"
                        else statistics.median(_bracket(b, "cpu_total") for _, b in pairs)
                    )
                    paired = [s["pods_per_s"] / _bracket(b, "pods_per_s") for s, b in pairs]
                    # the pairing before brackets: against the round's first none
                    vs_first = [s["pods_per_s"] / b[2]["pods_per_s"] for s, b in pairs]
                    results.append(
                        {
                            "nodes": size,
                            "verbs": verbs,
                            "pods_per_s": round(m["pods_per_s"], 1),
                            "baseline_pods_per_s": round(base, 1),
                            "ratio": round(statistics.median(paired), 3),
                            "round_ratios": [round(r, 3) for r in paired],
                            "round_ratios_vs_first_none": [round(r, 3) for r in vs_first],
                            "latency_p50_ms": round(m["latency_p50_ms"], 1),
                            "latency_p99_ms": round(m["latency_p99_ms"], 1),
                            "served_ms": {
                                v: None
                                if math.isnan(m[f"served_ms_{v}"])
                                else round(m[f"served_ms_{v}"], 3)
                                for v in SERVED_VERBS
                            },
                            "cpu_ms_per_pod": {**cpu, "total": round(total, 2)},
                            "cpu_ratio": round(base_cpu / total, 3) if total > 0 else None,
                            "cores_busy": round(total * m["pods_per_s"] / 1000.0, 2),
                        }
                    )
                    cpu_rows.append(m)
        finally:
            if lowcarb is not None:
                lowcarb.stop()
            plane.stop()

    table = Table(
        title=f"Through a real kube-scheduler: {pods} one-GPU pods, nodeCacheCapable true, "
        f"lowcarb --shortlist {DEFAULT_LIMIT if args.shortlist is None else args.shortlist}, "
        f"median of {rounds} round(s)"
    )
    table.caption = (
        "cpu: milliseconds of CPU per pod spent by each process (from /proc), and all four; "
        "cpu x: none's CPU per pod over this row's (the ratio if throughput followed CPU); "
        "cores: CPU seconds per second of the four (the machine has "
        f"{os.cpu_count()}); served: lowcarb's mean time to answer filter / prioritize / bind "
        "(its request histogram)"
    )
    cols = ("nodes", "extender verbs", "pods/s", "vs none", "p50 ms", "p99 ms")
    cpu_cols = CPU_PROCS
    extra = ("cpu all", "cpu x", "cores", "served ms f / p / b")
    for col in (*cols, *(f"cpu {c}" for c in cpu_cols), *extra):
        table.add_column(col, justify="left" if col == "extender verbs" else "right")
    for row, cpu in zip(results, cpu_rows, strict=True):
        table.add_row(
            f"{row['nodes']:,}",
            row["verbs"],
            f"{row['pods_per_s']:.1f}",
            f"x{row['ratio']:.2f}",
            f"{row['latency_p50_ms']:.0f}",
            f"{row['latency_p99_ms']:.0f}",
            *(f"{cpu[f'cpu_ms_{c}']:.1f}" for c in cpu_cols),
            f"{row['cpu_ms_per_pod']['total']:.1f}",
            "-" if row["cpu_ratio"] is None else f"x{row['cpu_ratio']:.2f}",
            f"{row['cores_busy']:.2f}",
            " / ".join(
                "-" if math.isnan(cpu[f"served_ms_{v}"]) else f"{cpu[f'served_ms_{v}']:.2f}"
                for v in SERVED_VERBS
            ),
        )
    Console(width=200).print(table)
    print(json.dumps({"benchmark": "e2e_throughput", "results": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
