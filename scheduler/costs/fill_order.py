"""The fleet's fill order: clean grid zones first, then a fixed order of the nodes in each zone.

Consolidation is what packs GPUs (``benchmarks/fragmentation.py``): always preferring the same
nodes among near-equal ones keeps whole nodes free at the end of the order for the pods that need
them. The GPU term does it among near-equal FGD scores with a per-node order (crc32 of the name,
:meth:`~scheduler.cluster.table.NodeTable.name_order`); the cost model prices it, so that the
order and the carbon price agree: the fill order ranks the grid zones by their long-run
intensity, cleanest first, and within a zone follows the name order. The long-run intensity is
the policy's ``carbon.static`` values over the built-in annual means (the table the static
provider serves). A node's *position* is in [0, 1): ``(zone rank + 1 - name order) /
zones``; zones without a long-run value, and nodes without a zone, go last (with the dirtiest).
The cost model counts ``fillOrderGpus x position`` as GPUs stranded
(:func:`scheduler.scoring.price`): filling the fleet in one order, zone by zone, keeps whole nodes
free for the pods that need them later.

Ranks are cached per list of zones; per cycle the work is one gather over the candidates. (Ranking
by the carbon view's trailing means instead was built, measured over 18 runs per load and removed:
README "Placement".)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from carbon.config import CarbonConfig
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
    """Each node's position in the fleet's fill order, from the zones' fixed ``long_run`` table."""

    def __init__(self, long_run: Mapping[str, float]) -> None:
        self.long_run = dict(long_run)
        self._ranks: dict[tuple[str, ...], np.ndarray] = {}

    def position(self, table: NodeTable) -> np.ndarray:
        """Position in [0, 1) per row of ``table`` (0: filled first)."""
        zones = tuple(table.zones)
        ranks = self._ranks.get(zones)
        if ranks is None:
            if len(self._ranks) >= _CACHE_LIMIT:
                self._ranks.clear()
            ranks = self._ranks[zones] = zone_ranks(zones, self.long_run)
        n_zones = max(len(zones), 1)
        zone = np.where(table.zone >= 0, table.zone, len(zones))
        return (ranks[zone] + 1.0 - table.name_order()) / n_zones
