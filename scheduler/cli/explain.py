"""``lowcarb explain``: how lowcarb would score a pod over a set of nodes, offline.

``--pod`` is a Pod manifest and ``--nodes`` a NodeList (``kubectl get nodes -o json``), each JSON or
YAML; ``--pods`` optionally adds the cluster's pods (``kubectl get pods -A -o json``): the bound
ones are counted against free GPUs as the live service counts them, and every one of them is
shown to the GPU term, oldest first, as the service shows it each pod it filters, so FGD's
typical pods are learned from them as the server learns them (:func:`learn_workload`). Carbon
data comes from the policy's chain: static values at once, live providers refreshed once first
unless ``--offline``.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import msgspec
import typer
import yaml

from carbon.clock import wall
from carbon.types import CarbonView
from scheduler import wire
from scheduler.cli.errors import blame, input_file
from scheduler.cli.inputs import policy_errors
from scheduler.cli.output import Column, Output, OutputOpt, WideOpt, console, csv_text, resolve
from scheduler.demand import DemandError, parse_demand
from scheduler.explain import ExplainError, node_rows, render
from scheduler.explain import explain as explain_pod

if TYPE_CHECKING:
    from scheduler.app import Parts
    from scheduler.engine import Engine


class InputError(ValueError):
    """An input file that cannot be used; the message names the file and the fix."""


def read_manifest(path: Path) -> Any:
    """Parse a JSON or YAML file (JSON is YAML, but JSON errors read better from json)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read: {exc}") from None
    try:
        return json.loads(text)
    except ValueError:
        pass
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InputError(f"{path}: neither JSON nor YAML: {exc}") from None


def load_pod(path: Path) -> wire.Pod:
    data = read_manifest(path)
    if not isinstance(data, dict) or data.get("kind", "Pod") != "Pod":
        kind = data.get("kind") if isinstance(data, dict) else type(data).__name__
        raise InputError(f"{path}: expected a Pod manifest (kind: Pod), got {kind!r}")
    try:
        return msgspec.convert(data, wire.Pod)
    except msgspec.ValidationError as exc:
        raise InputError(f"{path}: not a valid Pod: {exc}") from None


def _items(path: Path, kind: str) -> list[Any]:
    data = read_manifest(path)
    if isinstance(data, list):
        return data
    if isinstance(data, dict) and data.get("kind") == kind:
        return [data]
    if isinstance(data, dict) and isinstance(data.get("items"), list):
        return list(data["items"])
    raise InputError(
        f"{path}: expected a {kind}List (kubectl get ... -o json) or a list of {kind}s"
    )


def load_nodes(path: Path) -> list[wire.Node]:
    items = _items(path, "Node")
    try:
        nodes = [msgspec.convert(item, wire.Node) for item in items]
    except msgspec.ValidationError as exc:
        raise InputError(f"{path}: not a valid NodeList: {exc}") from None
    if not nodes:
        raise InputError(f"{path}: the NodeList has no nodes")
    return nodes


def load_pods(path: Path) -> list[wire.Pod]:
    try:
        return [msgspec.convert(item, wire.Pod) for item in _items(path, "Pod")]
    except msgspec.ValidationError as exc:
        raise InputError(f"{path}: not a valid PodList: {exc}") from None


def learn_workload(engine: Engine, pods: list[wire.Pod], skip_uid: str) -> int:
    """Show ``pods`` (but the explained one) to the engine's learning terms, oldest first, as the
    service's filter shows it each pod it is asked about; returns how many were shown. Pods whose
    requests do not parse are skipped, as the service answers those with an error unlearned."""
    seen = 0
    for pod in sorted(pods, key=lambda p: (p.metadata.creationTimestamp or "", _key(p))):
        if skip_uid and pod.metadata.uid == skip_uid:
            continue
        try:
            demand = parse_demand(pod)
        except DemandError:
            continue
        engine.observe(demand)
        seen += 1
    return seen


def _key(pod: wire.Pod) -> str:
    return f"{pod.metadata.namespace}/{pod.metadata.name}"


def carbon_view(parts: Parts, zones: set[str], *, offline: bool) -> CarbonView:
    """The policy's carbon chain as a snapshot; live providers refreshed once unless offline."""
    cache = parts.cache
    cache.track(zones)
    live = [p for p in cache.config.chain() if p.type != "static"]
    if offline or not live:
        return cache.view()

    async def refresh() -> CarbonView:
        try:
            return await cache.refresh_once()
        finally:
            await parts.stop()

    return asyncio.run(refresh())


def run_explain(
    pod_path: Path,
    nodes_path: Path,
    policy_path: Path | None = None,
    pods_path: Path | None = None,
    *,
    offline: bool = False,
    now_s: float | None = None,
) -> dict[str, Any]:
    """Everything ``lowcarb explain`` does except printing.

    A bad input raises :class:`~scheduler.cli.errors.UsageError` naming its option.
    """
    from scheduler.app import compose

    with policy_errors("--policy"):
        parts = compose(policy_path, policy_warnings=False)
    with blame("--pod", InputError):
        pod = load_pod(pod_path)
    with blame("--nodes", InputError):
        nodes = load_nodes(nodes_path)
    state = parts.state
    engine = parts.store.engine()
    for node in nodes:
        state.upsert_node(node)
    if pods_path is not None:
        with blame("--pods", InputError):
            running_pods = load_pods(pods_path)
        for running in running_pods:
            if running.metadata.uid != pod.metadata.uid:  # a bound pod is explained as if new
                state.upsert_pod(running)
        learn_workload(engine, running_pods, pod.metadata.uid)
    table, _ = state.table_for([n.metadata.name for n in nodes])
    zones = {z for z in table.zone_names() if z is not None}
    view = carbon_view(parts, zones, offline=offline)
    with blame("--pod", ExplainError):
        return explain_pod(engine, pod, table, view, wall() if now_s is None else now_s)


def explain(
    pod: Annotated[
        Path, typer.Option("--pod", callback=input_file, help="Pod manifest (YAML or JSON)")
    ],
    nodes: Annotated[
        Path,
        typer.Option(
            "--nodes", callback=input_file, help="NodeList: kubectl get nodes -o json (or YAML)"
        ),
    ],
    policy: Annotated[
        Path | None,
        typer.Option(
            "--policy", callback=input_file, help="Policy file; default: the embedded default"
        ),
    ] = None,
    pods: Annotated[
        Path | None,
        typer.Option(
            "--pods",
            callback=input_file,
            help="The cluster's pods (kubectl get pods -A -o json): bound ones count as used, "
            "all teach the GPU term its typical pods",
        ),
    ] = None,
    offline: Annotated[
        bool, typer.Option("--offline", help="Use static carbon values; no provider calls")
    ] = False,
    output: OutputOpt = None,
    wide: WideOpt = False,
    as_json: Annotated[bool, typer.Option("--json", help="Same as --output json")] = False,
) -> None:
    """Explain how lowcarb prices a pod on each node: feasibility, cost arithmetic, 0..10 score.

    The table shows node, zone, gCO2e, run hours, cost and score; --wide adds intensity, GPU
    watts, PUE, kWh, GPU-hours, stranded GPUs, scarcity, prices and each cost component.
    --output csv: one row per node with every field; --output json: the answer of POST /explain.
    """
    fmt = resolve(output, as_json)
    result = run_explain(pod, nodes, policy, pods, offline=offline)
    if fmt is Output.json:
        typer.echo(json.dumps(result, indent=2))
    elif fmt is Output.csv:
        rows = node_rows(result)
        columns = [Column(key, key) for key in dict.fromkeys(k for r in rows for k in r)]
        typer.echo(csv_text(columns, rows), nl=False)
    else:
        render(result, console(wide), wide=wide)
