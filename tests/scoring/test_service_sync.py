"""The extender before its cluster cache has synced: an Error (skippable), never a wrong answer."""

from __future__ import annotations

import json
from pathlib import Path

import msgspec

from carbon.cache import CarbonCache
from scheduler.cluster.state import ClusterState
from scheduler.engine import EngineStore
from scheduler.extender.service import NOT_SYNCED, Extender

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "kube-scheduler" / "v1.36.2"


def extender(synced: bool) -> Extender:
    store = EngineStore()
    cache = CarbonCache()
    return Extender(
        state=ClusterState(),
        engine=store.engine,
        carbon=cache.view,
        synced=lambda: synced,
    )


def test_filter_answers_an_error_until_synced() -> None:
    body = (FIXTURES / "filter.args.nodeCacheCapable-false.json").read_bytes()
    out = json.loads(extender(synced=False).filter(body))
    assert out["Error"] == NOT_SYNCED
    assert out["FailedNodes"] == {}
    after = json.loads(extender(synced=True).filter(body))
    assert after["Error"] == ""
    assert len(after["Nodes"]["items"]) + len(after["FailedNodes"]) == 4


def test_prioritize_scores_nothing_until_synced() -> None:
    body = (FIXTURES / "prioritize.args.nodeCacheCapable-true.json").read_bytes()
    names = msgspec.json.decode(body)["NodeNames"]
    out = json.loads(extender(synced=False).prioritize(body))
    assert out == []  # nothing scored (a host left out scores 0 for kube-scheduler)
    assert names
