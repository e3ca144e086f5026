"""Prometheus metrics of the extender service (one process-wide set, served at ``/metrics``)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

REQUEST_SECONDS = Histogram(
    "lowcarb_request_duration_seconds",
    "Time to answer an extender call, by verb",
    ["verb"],
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
NODES_PER_REQUEST = Histogram(
    "lowcarb_nodes_per_request",
    "Candidate nodes per filter/prioritize call",
    ["verb"],
    buckets=(1, 5, 10, 50, 100, 500, 1000, 2000, 5000, 10000),
)
PODS_FILTERED = Counter("lowcarb_pods_filtered_total", "Pods answered by filter")
PODS_SCORED = Counter("lowcarb_pods_scored_total", "Pods answered by prioritize")
PODS_BOUND = Counter("lowcarb_pods_bound_total", "Bindings created, by outcome", ["outcome"])
NODES_REJECTED = Counter("lowcarb_nodes_rejected_total", "Nodes failed by filter")
NODES_LEFT_OFF = Counter(
    "lowcarb_nodes_left_off_total",
    "Feasible nodes filter left off its shortlist (kube-scheduler did not score them)",
)
ERRORS = Counter("lowcarb_errors_total", "Errors answered, by kind", ["kind"])
POLICY_RELOAD_FAILED = Gauge(
    "lowcarb_policy_reload_failed", "1 while the policy file on disk is invalid (last good kept)"
)
POLICY_RELOADS = Counter("lowcarb_policy_reloads_total", "Policy reloads, by outcome", ["outcome"])
INFLIGHT_WAITS = Counter(
    "lowcarb_inflight_waits_total",
    "Filter/prioritize calls of a shared-GPU pod that first waited for the bind of a pod in "
    "flight, by outcome (bound: every awaited bind arrived; timeout: the bounded wait ran out)",
    ["outcome"],
)
INFLIGHT_WAIT_SECONDS = Histogram(
    "lowcarb_inflight_wait_seconds",
    "Time a shared-GPU pod's filter/prioritize waited for the binds of pods in flight",
    buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0),
)
