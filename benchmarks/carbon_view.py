"""Cost of the carbon reads scoring makes each cycle, and of one cache refresh.

Builds a :class:`carbon.cache.CarbonCache` with an Electricity Maps provider answered by an
in-process httpx MockTransport (fixture-shaped latest + 24 h hourly forecast per zone) for the 40
zones of the built-in cloud-region table, then times ``view().reading``, ``mean_intensity`` over a
1 h and a 24 h window, ``forecast`` and a full ``refresh_once`` (mock network). The offline static
default is timed too. Prints a table, then one JSON line last:
``{"benchmark": "carbon_view", "results": [{"op", "source", "zones", "p50_us", "p99_us"}, ...]}``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx

from carbon.cache import CarbonCache
from carbon.config import CarbonConfig
from carbon.snapshot import CarbonSnapshot
from carbon.zones import builtin_regions

NOW = datetime(2026, 6, 15, 12, 20, tzinfo=UTC)


def _handler(request: httpx.Request) -> httpx.Response:
    zone = request.url.params["zone"]
    base = 100 + (sum(map(ord, zone)) % 400)
    hour = NOW.replace(minute=0)
    if request.url.path.endswith("/latest"):
        body = {"zone": zone, "carbonIntensity": base, "datetime": hour.isoformat()}
        return httpx.Response(200, json=body)
    items = [
        {
            "carbonIntensity": base + 10 * (h % 7),
            "datetime": (hour + timedelta(hours=h)).isoformat(),
        }
        for h in range(25)
    ]
    return httpx.Response(200, json={"zone": zone, "forecast": items})


def _time(fn: Callable[[], object], repeat: int) -> tuple[float, float]:
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter_ns()
        fn()
        samples.append((time.perf_counter_ns() - t0) / 1000.0)
    samples.sort()
    return statistics.median(samples), samples[int(0.99 * (len(samples) - 1))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=2000, help="timed calls per row")
    args = parser.parse_args()
    zones = sorted({r.zone for r in builtin_regions().values()})
    now_s = NOW.timestamp()
    cfg = CarbonConfig.model_validate(
        {
            "providers": [{"name": "electricitymaps", "url": "http://em.bench"}],
            "fallback": ["electricitymaps", "static"],
        }
    )
    live = CarbonCache(
        cfg, clock=lambda: now_s, transport=httpx.MockTransport(_handler), zones=zones
    )
    offline = CarbonCache(clock=lambda: now_s)

    async def refresh() -> None:
        await live.refresh_once()

    asyncio.run(refresh())
    rows = []

    def add(op: str, source: str, fn: Callable[[], object], repeat: int) -> None:
        p50, p99 = _time(fn, repeat)
        rows.append(
            {
                "op": op,
                "source": source,
                "zones": len(zones),
                "p50_us": round(p50, 2),
                "p99_us": round(p99, 2),
            }
        )

    for name, cache in (("electricitymaps", live), ("static", offline)):
        view = cache.view()

        def readings(v: CarbonSnapshot = view) -> object:
            return [v.reading(z) for z in zones]

        def mean_1h(v: CarbonSnapshot = view) -> object:
            return [v.mean_intensity(z, now_s, now_s + 3600) for z in zones]

        def mean_24h(v: CarbonSnapshot = view) -> object:
            return [v.mean_intensity(z, now_s, now_s + 86400) for z in zones]

        add("reading x all zones", name, readings, args.repeat)
        add("mean 1h x all zones", name, mean_1h, args.repeat)
        add("mean 24h x all zones", name, mean_24h, args.repeat)
    add("forecast (1 zone)", "electricitymaps", lambda: live.view().forecast("DE"), args.repeat)

    def one_refresh() -> None:
        asyncio.run(refresh())

    add("refresh_once (mock net)", "electricitymaps", one_refresh, 20)
    assert live.view().reading("DE") is not None
    assert live.view().reading("DE").source == "electricitymaps"  # type: ignore[union-attr]

    print(f"{'op':<26} {'source':<16} {'zones':>5} {'p50 us':>10} {'p99 us':>10}")
    for r in rows:
        print(
            f"{r['op']:<26} {r['source']:<16} {r['zones']:>5} {r['p50_us']:>10} {r['p99_us']:>10}"
        )
    print(json.dumps({"benchmark": "carbon_view", "results": rows}))


if __name__ == "__main__":
    main()
