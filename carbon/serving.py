"""Which source serves each zone after a refresh: gauges, fallback counts, one log line per switch.

:class:`ServingLog` is fed every snapshot the cache publishes. It sets the served intensity and
data-age gauges per zone, counts a zone's switch to a fallback source (one per episode, not per
refresh), and logs each switch away from and back to the primary source once.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable

from carbon import metrics
from carbon.snapshot import CarbonSnapshot
from carbon.types import SignalKind

log = logging.getLogger("lowcarb.carbon.cache")  # the cache's logger: one name for carbon data


class ServingLog:
    """The source serving each zone at the last publish, and the fallback switches so far."""

    def __init__(self) -> None:
        self._serving: dict[str, str] = {}
        self.fallbacks: Counter[tuple[str, str]] = Counter()

    def record(
        self, snap: CarbonSnapshot, zones: Iterable[str], primary: str, kind: SignalKind
    ) -> None:
        """Note who serves ``zones`` in ``snap`` (judged in the primary source's ``kind``)."""
        for zone in zones:
            hit = snap.serving(zone, kind)
            if hit is None:
                continue
            src, reading = hit
            metrics.INTENSITY.labels(zone=zone, kind=reading.kind).set(reading.g_per_kwh)
            metrics.DATA_AGE.labels(zone=zone).set(reading.age_s)
            before = self._serving.get(zone)
            if before == src.name:
                continue
            self._serving[zone] = src.name
            if src.name != primary:
                self.fallbacks[(zone, src.name)] += 1
                metrics.FALLBACKS.labels(zone=zone, source=src.name).inc()
                log.warning(
                    "carbon: zone %s served by fallback %s (primary %s has no fresh value)",
                    zone,
                    src.name,
                    primary,
                )
            elif before is not None:
                log.info("carbon: zone %s back on primary source %s", zone, primary)
