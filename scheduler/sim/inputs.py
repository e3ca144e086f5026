"""What a comparison runs on: the trace's pods, the fleet dealt over the zones, their series.

:func:`load_inputs` reads the trace (its first N pods, or the quick run's 2,000 on each GPU model's
nodes cut to their share of the trace's GPU request), aligns trace time 0 with ``--start`` (default
1 January of ``--year``), deals the nodes over the zones (``seed``) and draws the node order
(``node_order``); :func:`run_series` reads the zones' hourly series over every run the pods can
make. Shared by :func:`scheduler.sim.run.compare` and the placement benchmarks.
"""

from __future__ import annotations

from carbon.energy import PowerModel
from carbon.series import HourlySeries
from scheduler.sim.carbon import load_series, parse_start, year_start
from scheduler.sim.results import QUICK_PODS, SimOptions
from scheduler.sim.trace import (
    SimNodes,
    SimPods,
    cut_fleet,
    load_nodes,
    load_pods,
    place_nodes,
    redraw_names,
)
from scheduler.sim.trace import resolve_pod_file as resolve_trace


def sim_zones(opts: SimOptions) -> tuple[str, ...]:
    """The zones of the run (the single Let's Wait Awhile zone in that mode)."""
    return (opts.lwa.upper(),) if opts.lwa else opts.zones


def load_inputs(opts: SimOptions, *, scaled: bool = True) -> tuple[SimPods, SimNodes, float]:
    """Pods (epoch times), nodes placed in zones, and the epoch of the trace's time 0.

    ``scaled``: arrivals compressed by ``opts.load_scale`` (False: real arrival times).
    """
    trace = load_pods(resolve_trace(opts.trace))
    limit = QUICK_PODS if opts.quick and opts.pods is None else opts.pods
    pods = trace.head(limit) if limit is not None else trace
    if scaled:
        pods = pods.scaled(opts.load_scale)
    zones = sim_zones(opts)
    t0 = parse_start(opts.start) if opts.start else year_start(2020 if opts.lwa else opts.year)
    pods = SimPods(
        pods.names,
        pods.cpu_milli,
        pods.mem_bytes,
        pods.gpus,
        pods.gpu_milli,
        pods.models,
        pods.qos,
        pods.arrival + t0,
        pods.duration,
    )
    share = opts.fleet_share
    if share is None and opts.quick:
        share = quick_share(pods, trace)
    fleet = cut_fleet(load_nodes(opts.nodes), share or 1.0, opts.seed)
    nodes = redraw_names(place_nodes(fleet, zones, opts.seed), opts.node_order)
    return pods, nodes, t0


def quick_share(pods: SimPods, trace: SimPods) -> float:
    """The fleet share for ``pods`` (the head of ``trace``): their share of the trace's GPU
    request, so they offer the cut fleet the load the whole trace offers the whole fleet."""
    total = float(trace.gpu_fraction.sum())
    return min(1.0, float(pods.gpu_fraction.sum()) / total) if total > 0 else 1.0


def run_series(
    opts: SimOptions, real: SimPods, nodes: SimNodes, power: PowerModel
) -> dict[str, HourlySeries]:
    """The zones' hourly series over every run of ``real`` (real arrival times): from the first
    arrival to the longest pod on the slowest GPU model, plus any slack and 30 days."""
    lo = float(real.arrival.min())
    slowest = min(power.gpu(m).relativeSpeed for m in set(nodes.model))
    longest = float((real.arrival + real.duration / min(slowest, 1.0)).max())
    hi = longest + opts.slack_h * 3600 + 30 * 86400
    return load_series(sim_zones(opts), opts.year, lo, hi, lwa=bool(opts.lwa))
