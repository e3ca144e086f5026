"""Watching an extender score: each evaluation its engine makes from now on, with its row count
and the fleet share it priced scarcity at."""

from __future__ import annotations

from typing import Any, NamedTuple

from scheduler.extender.service import Extender


class Evaluated(NamedTuple):
    rows: int  # candidate rows of the evaluated table
    fleet_share: float | None  # the scarcity input (None: the candidates' own share)


def record_evaluations(ext: Extender) -> list[Evaluated]:
    """A list that ``ext``'s engine appends each ``evaluate`` call to (the call still runs)."""
    engine = ext.engine()
    calls: list[Evaluated] = []
    evaluate = engine.evaluate

    def recording(*args: Any, **kwargs: Any) -> Any:
        calls.append(Evaluated(len(args[1]), kwargs.get("fleet_share")))
        return evaluate(*args, **kwargs)

    engine.evaluate = recording  # type: ignore[method-assign]
    return calls
