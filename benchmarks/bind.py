"""Where a bind's time goes: binds/s and a per-phase breakdown of the extender's bind verb.

The service is built exactly as ``lowcarb serve --kubeconfig --ledger`` builds it (bundled
policy, the cluster sync, the gate controller, a SQLite ledger with ``synchronous=FULL``) and runs
in this process on uvloop; the Kubernetes API is the test suite's fake API server
(``tests/support/fakeapi.py``: a pod store that answers Bindings as kube-apiserver does) in a
child process on loopback, so its Python time does not share this process's GIL. The driver does
what kube-scheduler does: prioritize one pod at a time (the scheduling cycle is serial), then
bind it in the background with at most ``--concurrency`` binds in flight (binding cycles run in
parallel goroutines). Pods are small CPU pods on the 6 recorded nodes: scoring costs little, the
bind path is what is measured.

Per bind, inside ``Extender.bind``: ``api`` is the time awaiting the Binding (the binder),
``ledger`` the time awaiting the ledger (the bind intent's group commit, and before intents
existed the placement row's commit), ``other`` the rest (decode, record, assume, and waiting
for the event loop while other binds and prioritize run). ``calls/bind`` counts API requests per
bound pod (Binding POSTs and annotation PATCHes, background ones included) and ``commits/bind``
the ledger's SQLite commits (each one an fsync of the WAL) per bound pod.

Prints a table, then one JSON line last:
``{"benchmark": "bind", "results": [{"concurrency", "binds", "binds_per_s", "p50_ms",
"p99_ms", "api_ms", "ledger_ms", "other_ms", "calls_per_bind", "commits_per_bind"}, ...]}``
(phase columns are means per bind).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import json
import logging
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import msgspec
import structlog

from scheduler.app import Runtime, ServeOptions, build_runtime
from scheduler.kube import KubeConfig

NODES = ["euc1-a-gpu", "euc1-b-cpu", "use1-a-gpu", "use1-b-cpu", "usw2-a-gpu", "usw2-b-gpu"]
NS = "e2e"
T = TypeVar("T")


# --- the fake API server, in a child process -------------------------------------------------


def serve_fake_api(pods: int) -> None:
    """Child process: the fake API server with ``pods`` unbound pods; prints its URL, then
    serves until stdin closes."""
    from tests.support.fakeapi import FakeApiServer, PodStore, Reply, WatchReply, fixture

    api = FakeApiServer().start()
    store = PodStore(api, namespace=NS, selectors=True)
    small = {"requests": {"cpu": "10m", "memory": "16Mi"}}
    for i in range(pods):
        pod = store.add_pod(pod_name(i), gates=[], uid=pod_uid(i), notify=False)
        for c in pod["spec"]["containers"]:
            c["resources"] = copy.deepcopy(small)
    store.install()
    api.add("GET", "/api/v1/nodes", Reply(200, fixture("nodes-list.json")), watch=False)
    api.add("GET", "/api/v1/nodes", WatchReply([]), watch=True)
    print(api.url, flush=True)
    sys.stdin.read()
    api.stop()


def pod_name(i: int) -> str:
    return f"bench-{i:06d}"


def pod_uid(i: int) -> str:
    return f"00000000-0000-4000-8000-{i:012d}"


@contextlib.contextmanager
def fake_api(pods: int) -> Any:
    proc = subprocess.Popen(
        [sys.executable, __file__, "--fake-api", str(pods)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stdin is not None
    url = proc.stdout.readline().decode().strip()
    try:
        yield url
    finally:
        proc.stdin.close()
        proc.wait(timeout=30)


# --- instrumentation ----------------------------------------------------------------------------


class Phases:
    """Time spent awaiting each instrumented coroutine, per bind."""

    def __init__(self) -> None:
        self.api: list[float] = []
        self.ledger: list[float] = []
        self.total: list[float] = []
        self.calls: Counter[str] = Counter()

    def timed(
        self, into: list[float], fn: Callable[..., Coroutine[Any, Any, T]]
    ) -> Callable[..., Coroutine[Any, Any, T]]:
        async def wrapper(*args: Any, **kwargs: Any) -> T:
            start = time.perf_counter()
            try:
                return await fn(*args, **kwargs)
            finally:
                into.append(time.perf_counter() - start)

        return wrapper


def instrument(runtime: Runtime, phases: Phases) -> None:
    ext = runtime.extender
    assert ext.binder is not None and runtime.sync is not None
    ext.binder.bind = phases.timed(phases.api, ext.binder.bind)  # type: ignore[method-assign]
    ext._intend = phases.timed(phases.ledger, ext._intend)  # type: ignore[method-assign]
    ext._record = phases.timed(phases.ledger, ext._record)  # type: ignore[method-assign]
    ext.bind = phases.timed(phases.total, ext.bind)  # type: ignore[method-assign]
    client = runtime.sync.client
    request = client.request

    async def counted(method: str, path: str, **kwargs: Any) -> tuple[int, bytes]:
        if method != "GET":
            what = "binding" if path.endswith("/binding") else path.split("/")[-2]
            phases.calls[f"{method} {what}"] += 1
        return await request(method, path, **kwargs)

    client.request = counted


# --- the run ------------------------------------------------------------------------------------


def pod_json(i: int) -> dict[str, Any]:
    return {
        "metadata": {"name": pod_name(i), "namespace": NS, "uid": pod_uid(i)},
        "spec": {
            "schedulerName": "lowcarb",
            "containers": [
                {"name": "main", "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}
            ],
        },
    }


@contextlib.asynccontextmanager
async def serving(url: str, ledger: Path) -> AsyncIterator[Runtime]:
    options = ServeOptions(kube_config=KubeConfig(host=url, token="t"), ledger=ledger)
    options.in_cluster = True  # cluster mode: the kube config above is used as loaded
    runtime = build_runtime(options)
    async with runtime.app.router.lifespan_context(runtime.app):
        deadline = time.monotonic() + 30
        while not runtime.state.synced:
            if time.monotonic() > deadline:
                raise SystemExit("bind benchmark: the cluster cache never synced")
            await asyncio.sleep(0.01)
        yield runtime


async def run(
    url: str, first: int, pods: int, concurrency: int, ledger: Path, group_wait_s: float | None
) -> dict[str, Any]:
    phases = Phases()
    async with serving(url, ledger) as runtime:
        instrument(runtime, phases)
        if group_wait_s is not None and runtime.ledger is not None:
            runtime.ledger.intents.max_wait_s = group_wait_s
        ext = runtime.extender
        limit = asyncio.Semaphore(concurrency)
        latencies: list[float] = []
        errors: list[str] = []

        async def bind(i: int, node: str) -> None:
            try:
                body = msgspec.json.encode(
                    {"PodName": pod_name(i), "PodNamespace": NS, "PodUID": pod_uid(i), "Node": node}
                )
                start = time.perf_counter()
                try:
                    answer = json.loads(await ext.bind(body))
                except Exception as exc:
                    errors.append(f"{type(exc).__name__}: {exc}")
                    raise
                latencies.append(time.perf_counter() - start)
                if answer.get("Error"):
                    errors.append(answer["Error"])
            finally:
                limit.release()

        tasks: set[asyncio.Task[None]] = set()
        commits0 = runtime.ledger.ledger.commits if runtime.ledger else 0
        start = time.perf_counter()
        for i in range(first, first + pods):
            await limit.acquire()
            args = msgspec.json.encode({"Pod": pod_json(i), "NodeNames": NODES})
            prio = json.loads(ext.prioritize(args))
            node = max(prio, key=lambda h: h["Score"])["Host"]
            task = asyncio.get_running_loop().create_task(bind(i, node))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            await asyncio.sleep(0)  # kube-scheduler's next cycle starts while this bind runs
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - start
        if runtime.ledger is not None:
            await asyncio.to_thread(runtime.ledger.ledger.flush)
        commits = (runtime.ledger.ledger.commits if runtime.ledger else 0) - commits0
    if errors:
        raise SystemExit(f"bind benchmark: {len(errors)} binds failed, e.g. {errors[0]}")
    n = len(latencies)
    lat = sorted(latencies)
    api, led, tot = (sum(x) / n for x in (phases.api, phases.ledger, phases.total))
    return {
        "concurrency": concurrency,
        "binds": n,
        "binds_per_s": round(n / elapsed, 1),
        "p50_ms": round(lat[n // 2] * 1e3, 2),
        "p99_ms": round(lat[min(n - 1, int(n * 0.99))] * 1e3, 2),
        "api_ms": round(api * 1e3, 2),
        "ledger_ms": round(led * 1e3, 2),
        "other_ms": round((tot - api - led) * 1e3, 2),
        "calls_per_bind": round(sum(phases.calls.values()) / n, 2),
        "calls": dict(phases.calls),
        "commits_per_bind": round(commits / n, 2),
    }


async def main_async(
    pods: int, concurrency: list[int], group_wait_s: float | None
) -> list[dict[str, Any]]:
    structlog.configure(logger_factory=structlog.ReturnLoggerFactory())  # no per-bind log output
    logging.disable(logging.WARNING)  # the recorded nodes' regions have no carbon zone: said once
    results = []
    with fake_api(pods * len(concurrency)) as url, tempfile.TemporaryDirectory() as tmp:
        for k, c in enumerate(concurrency):
            ledger = Path(tmp) / f"ledger-{c}.sqlite"
            results.append(await run(url, k * pods, pods, c, ledger, group_wait_s))
    return results


def run_on_uvloop(coro: Coroutine[Any, Any, T]) -> T:
    """``lowcarb serve`` runs on uvloop (uvicorn's default when installed): so does this."""
    try:
        import uvloop
    except ImportError:  # not on Windows
        return asyncio.run(coro)
    return uvloop.run(coro)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=400, help="binds per row")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument(
        "--group-wait-ms",
        type=float,
        default=None,
        help="bound on how long an intent group waits for the previous commit (default: serve's)",
    )
    parser.add_argument("--fake-api", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.fake_api is not None:
        serve_fake_api(args.fake_api)
        return
    wait = args.group_wait_ms / 1000 if args.group_wait_ms is not None else None
    results = run_on_uvloop(main_async(args.pods, args.concurrency, wait))
    head = f"{'in flight':>9} {'binds':>6} {'binds/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'api ms':>7}"
    print(f"{head} {'ledger ms':>9} {'other ms':>8} {'calls/bind':>10} {'commits/bind':>12}")
    for r in results:
        print(
            f"{r['concurrency']:>9} {r['binds']:>6} {r['binds_per_s']:>8} {r['p50_ms']:>7} "
            f"{r['p99_ms']:>7} {r['api_ms']:>7} {r['ledger_ms']:>9} {r['other_ms']:>8} "
            f"{r['calls_per_bind']:>10} {r['commits_per_bind']:>12}"
        )
    print(json.dumps({"benchmark": "bind", "results": results}))


if __name__ == "__main__":
    main()
