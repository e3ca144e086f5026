"""The extender's preempt verb: kube-scheduler's victims accepted as proposed.

lowcarb adds no preemption policy; it answers ``NodeNameToMetaVictims`` from either form
kube-scheduler sends (victims as pods, or as UIDs when ``nodeCacheCapable``), from a loose decode.
"""

from __future__ import annotations

import json

from scheduler import wire
from scheduler.decode_errors import json_problem


def accept_victims(body: bytes) -> bytes:
    """Accept kube-scheduler's victims as proposed (lowcarb adds no preemption policy)."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as exc:
        why = json_problem(body)
        raise wire.WireError(f"body is not ExtenderPreemptionArgs: {why}") from exc
    if not isinstance(data, dict):
        raise wire.WireError("body is not ExtenderPreemptionArgs: expected a JSON object")
    folded = {k.lower(): v for k, v in data.items()}
    meta = folded.get("nodenametometavictims")
    if meta is None:
        victims = folded.get("nodenametovictims") or {}
        meta = {
            node: {
                "Pods": [
                    {"UID": (p.get("metadata") or {}).get("uid", "")} for p in (v.get("Pods") or [])
                ],
                "NumPDBViolations": v.get("NumPDBViolations", 0),
            }
            for node, v in victims.items()
        }
    return wire.encode({"NodeNameToMetaVictims": meta})
