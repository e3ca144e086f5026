"""Last of the session: every pod a lowcarb profile bound in any e2e namespace carries lowcarb's
decision annotation and has its ledger row, except the pods a scenario bound without lowcarb on
purpose (lowcarb down or killed, Bindings made by the test itself, the known single-candidate
bug), which the scenarios list in ``Session.unaccounted``."""

from __future__ import annotations

from tests.e2e.e2e_support import Session, assert_accounted
from tests.e2e.kubeapi import KubeApi
from tests.e2e.objects import node_of

LOWCARB_PROFILES = {"lowcarb", "lowcarb-full", "lowcarb-b"}


def test_every_pod_bound_through_lowcarb_is_accounted(api: KubeApi, session_state: Session) -> None:
    checked = 0
    for ns in sorted(session_state.namespaces):
        skip = session_state.unaccounted.get(ns, set())
        names = [
            p["metadata"]["name"]
            for p in api.pods(ns)
            if node_of(p)
            and p["spec"].get("schedulerName") in LOWCARB_PROFILES
            and p["metadata"]["name"] not in skip
        ]
        assert_accounted(api, session_state.ledgers, ns, names)
        checked += len(names)
    assert checked >= 50, f"only {checked} pods checked: did the scenarios run?"
    print(f"\naccounting: {checked} bound pods, each with its decision and ledger row")
