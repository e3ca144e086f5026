"""The fleet's fill order: clean grid zones first, then a fixed order of the nodes in each zone.

Consolidation is what packs GPUs (``benchmarks/fragmentation.py``): always preferring the same
nodes among near-equal ones keeps whole nodes free at the end of the order for the pods that need
them. The GPU term does it among near-equal FGD scores with a per-node order (crc32 of the name,
:meth:`~scheduler.cluster.table.NodeTable.name_order`); the cost model prices it, so that the
order and the carbon price agree: the fill order ranks the grid zones by their long-run
intensity, cleanest first, and within a zone follows the name order. The long-run intensity is
the carbon view's (:meth:`carbon.types.CarbonView.long_run`, the value a run window is judged by
past the forecast's end: live, the static table's value of the zone, else the serving source's
14-day mean; in the simulator the trailing 14-day mean of completed hours), and where the view
has none, the policy's ``carbon.static`` values over the built-in annual means (the table the
static provider serves). A node's *position* is in [0, 1): ``(zone rank + 1 - name order) /
zones``; zones without a long-run value, and nodes without a zone, go last (with the dirtiest).
The cost model counts ``fillOrderGpus x position`` as GPUs stranded
(:func:`scheduler.scoring.price`): filling the fleet in one order, zone by zone, keeps whole nodes
free for the pods that need them later.

Ranks are cached per (list of zones, their long-run values); per cycle the work is one long-run
look-up per zone of the node table (in memory) and one gather over the candidates.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from carbon.config import CarbonConfig
from carbon.types import CarbonView, SignalKind
from carbon.zones import builtin_annual_means
from scheduler.cluster.table import NodeTable

_CACHE_LIMIT = 64


def long_run_means(carbon: CarbonConfig) -> dict[str, float]:
    """Long-run intensity per zone (g/kWh): ``carbon.static`` over the built-in annual means
    (those only with ``builtinStatic``), the values the static provider serves."""
    base = dict(builtin_annual_means()) if carbon.builtin_static else {}
    base.update({zone: float(v) for zone, v in carbon.static.items()})
    return base


def zone_ranks(zones: Sequence[str], long_run: Mapping[str, float]) -> np.ndarray:
    """Rank of each zone in ``zones`` (0 = cleanest by ``long_run``; ties by name), with one more
    entry at the end for nodes without a zone; zones without a value rank last."""
    n = len(zones)
    last = max(n - 1, 0)
    ranks = np.full(n + 1, last, dtype=np.float64)
    known = sorted((long_run[z], z, i) for i, z in enumerate(zones) if z in long_run)
    for rank, (_, _, i) in enumerate(known):
        ranks[i] = rank
    return ranks


class FillOrder:
    """Each node's position in the fleet's fill order, from the zones' long-run intensity: the
    fixed ``long_run`` table, or with ``from_view`` the carbon view's values where it has them
    (measured, not adopted: README "Placement"; off by default)."""

    def __init__(self, long_run: Mapping[str, float], *, from_view: bool = False) -> None:
        self.long_run = dict(long_run)
        self.from_view = from_view
        self._ranks: dict[tuple[tuple[str, ...], tuple[float | None, ...]], np.ndarray] = {}

    def values(
        self, zones: Sequence[str], view: CarbonView | None, kind: SignalKind = "average"
    ) -> tuple[float | None, ...]:
        """Long-run g/kWh per zone the order ranks by: the view's (with ``from_view``), else the
        table's, else None."""
        table = self.long_run
        if view is None or not self.from_view:
            return tuple(table.get(z) for z in zones)
        out: list[float | None] = []
        for z in zones:
            g = view.long_run(z, kind)
            out.append(table.get(z) if g is None or not np.isfinite(g) else float(g))
        return tuple(out)

    def position(
        self, table: NodeTable, view: CarbonView | None = None, kind: SignalKind = "average"
    ) -> np.ndarray:
        """Position in [0, 1) per row of ``table`` (0: filled first), the zones ranked by
        ``view``'s long-run intensity of signal ``kind`` when ``from_view`` (else the table)."""
        zones = tuple(table.zones)
        by_view = view is not None and self.from_view
        values = self.values(zones, view, kind) if by_view else ()  # () : the table's
        key = (zones, values)
        ranks = self._ranks.get(key)
        if ranks is None:
            if len(self._ranks) >= _CACHE_LIMIT:
                self._ranks.clear()
            known: Mapping[str, float] = self.long_run
            if by_view:
                known = {z: v for z, v in zip(zones, values, strict=True) if v is not None}
            ranks = self._ranks[key] = zone_ranks(zones, known)
        n_zones = max(len(zones), 1)
        zone = np.where(table.zone >= 0, table.zone, len(zones))
        return (ranks[zone] + 1.0 - table.name_order()) / n_zones
