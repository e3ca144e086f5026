"""The carbon cache: background refresh per provider, and the immutable snapshot scoring reads.

``CarbonCache.view()`` returns a :class:`CarbonSnapshot` (a reference swap after every refresh):
readers never touch the network, never wait on a lock and never see an exception. Each value
carries its source and age; values older than ``staleAfter`` are skipped in favour of the next
source of the fallback chain (which ends with ``static``). Providers are refreshed on their own
interval with per-provider exponential back-off, Retry-After, call timeouts and a circuit
breaker; values outside 0..2,000 g/kWh are rejected. Every error is counted; each failure
episode (and each switch of a zone to a fallback) is logged once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from types import MappingProxyType
from typing import Final

import httpx
import numpy as np

from carbon import metrics
from carbon.aio import cancel_all
from carbon.backoff import Backoff
from carbon.clock import wall
from carbon.config import STATIC_NAME, CarbonConfig, ProviderConfig
from carbon.providers.base import (
    PartialFailure,
    Provider,
    ProviderError,
    create_provider,
    utc,
)
from carbon.providers.static import static_values
from carbon.types import IntensityPoint, Reading, SignalKind, ZoneSeries
from carbon.window import FloatArray, IntervalSeries

log = logging.getLogger("lowcarb.carbon.cache")

MAX_G_PER_KWH: Final = 2000.0
ZONE_LEVEL: Final[frozenset[str]] = frozenset({"unknown_zone", "invalid_value", "empty"})
# kinds that say the provider itself is unhealthy (back off / circuit), even for one zone
PROVIDER_HEALTH: Final[frozenset[str]] = frozenset(
    {"timeout", "network", "server", "rate_limited", "auth"}
)
UNKNOWN_ZONE_RETRY_S: Final = 3600.0


def valid_value(g: float) -> bool:
    """True for a plausible grid intensity (finite, 0..2,000 g/kWh)."""
    return math.isfinite(g) and 0.0 <= g <= MAX_G_PER_KWH


# ------------------------------------------------------------------------------------ snapshot


@dataclass(frozen=True, slots=True)
class Latest:
    """One source's latest value for one zone."""

    g_per_kwh: float
    start_s: float
    estimated: bool
    kind: SignalKind


@dataclass(frozen=True, slots=True, eq=False)
class Forecast:
    """One source's forecast for one zone as sorted, non-overlapping interval arrays."""

    starts: FloatArray
    ends: FloatArray
    values: FloatArray
    source: str
    zone: str
    intervals: IntervalSeries = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "intervals", IntervalSeries(self.starts, self.ends, self.values))

    def series(self) -> ZoneSeries:
        """As the contract's :class:`ZoneSeries`."""
        return ZoneSeries(
            zone=self.zone,
            starts=tuple(self.starts.tolist()),
            ends=tuple(self.ends.tolist()),
            values=tuple(self.values.tolist()),
            source=self.source,
        )


@dataclass(frozen=True, slots=True, eq=False)
class Source:
    """Everything one provider contributes to a snapshot (read-only mappings)."""

    name: str
    kind: SignalKind
    static: bool
    latest: Mapping[str, Latest]
    forecasts: Mapping[str, Forecast]
    static_values: Mapping[str, float] = field(default_factory=dict)


class CarbonSnapshot:
    """Immutable :class:`~carbon.types.CarbonView` of the cache at one refresh."""

    def __init__(
        self,
        chain: tuple[Source, ...],
        *,
        stale_after: float,
        clock: Callable[[], float],
        on_miss: Callable[[str], None] | None = None,
    ) -> None:
        self.chain = chain
        self.stale_after = stale_after
        self.clock = clock
        self._on_miss = on_miss
        self._orders: dict[str, tuple[Source, ...]] = {
            kind: self._order(kind) for kind in ("average", "marginal")
        }

    def _order(self, kind: str) -> tuple[Source, ...]:
        """Sources of ``kind`` first (chain order), then static, then the other kind's."""
        live = [s for s in self.chain if not s.static]
        if not any(s.kind == kind for s in live):
            return self.chain
        statics = [s for s in self.chain if s.static]
        return (
            *[s for s in live if s.kind == kind],
            *statics,
            *[s for s in live if s.kind != kind],
        )

    def serving(self, zone: str, kind: SignalKind = "average") -> tuple[Source, Reading] | None:
        """The source that serves ``zone`` now and its reading (None if no source knows it)."""
        try:
            now = self.clock()
            order = self._orders.get(kind) or self.chain
            stale: tuple[Source, Reading] | None = None
            missed = False
            for src in order:
                if src.static:
                    g = src.static_values.get(zone)
                    if g is not None:
                        if missed and self._on_miss is not None:
                            self._on_miss(zone)
                        return src, Reading(zone, g, src.name, 0.0, False, src.kind, True)
                    continue
                entry = src.latest.get(zone)
                if entry is None:
                    missed = True
                    continue
                age = max(0.0, now - entry.start_s)
                if age <= self.stale_after:
                    return src, Reading(
                        zone, entry.g_per_kwh, src.name, age, False, entry.kind, entry.estimated
                    )
                if stale is None:
                    stale = (
                        src,
                        Reading(zone, entry.g_per_kwh, src.name, age, True, entry.kind, True),
                    )
            if missed and self._on_miss is not None:
                self._on_miss(zone)
            return stale
        except Exception:  # the request path must never see an exception
            log.exception("carbon: snapshot lookup failed for zone %r", zone)
            return None

    def reading(self, zone: str, kind: SignalKind = "average") -> Reading | None:
        """Latest value for ``zone`` after fallback, or None when no source knows it."""
        hit = self.serving(zone, kind)
        return hit[1] if hit else None

    def mean_intensity(
        self, zone: str, start_s: float, end_s: float, kind: SignalKind = "average"
    ) -> Reading | None:
        """Forecast mean over [start_s, end_s) from the serving source; gaps use its latest."""
        hit = self.serving(zone, kind)
        if hit is None:
            return None
        src, latest = hit
        fc = src.forecasts.get(zone)
        if fc is None or latest.stale:
            return latest
        try:
            mean, covered = fc.intervals.mean(start_s, end_s, latest.g_per_kwh)
        except Exception:
            log.exception("carbon: forecast mean failed for zone %r", zone)
            return latest
        if covered == 0.0:
            return latest
        return Reading(zone, mean, src.name, latest.age_s, False, latest.kind, True)

    def forecast(self, zone: str, kind: SignalKind = "average") -> ZoneSeries | None:
        """The serving source's forecast for ``zone`` (None for static or none held)."""
        hit = self.serving(zone, kind)
        if hit is None:
            return None
        fc = hit[0].forecasts.get(zone)
        return fc.series() if fc is not None else None


# --------------------------------------------------------------------------------- provider state


@dataclass
class ProviderState:
    """Mutable per-provider bookkeeping (only the refresh tasks touch it)."""

    config: ProviderConfig
    provider: Provider
    latest: dict[str, Latest] = field(default_factory=dict)
    forecasts: dict[str, Forecast] = field(default_factory=dict)
    failures: int = 0
    next_attempt: float = 0.0
    circuit_open: bool = False
    unknown_until: dict[str, float] = field(default_factory=dict)
    episodes: dict[tuple[str, str], float] = field(default_factory=dict)
    task: asyncio.Task[None] | None = None
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    table: Mapping[str, float] = field(default_factory=dict)

    @property
    def static(self) -> bool:
        """True for the static provider type (served from its table, never refreshed)."""
        return self.config.type == STATIC_NAME


def _forecast_arrays(points: list[IntensityPoint], source: str, zone: str) -> Forecast | None:
    if not points:
        return None
    pts = sorted(points, key=lambda p: p.start)
    starts: list[float] = []
    ends: list[float] = []
    values: list[float] = []
    for p in pts:
        s, e = p.start.timestamp(), p.end.timestamp()
        if ends and s < ends[-1]:  # overlapping/duplicate: keep the earlier interval
            s = ends[-1]
        if e <= s:
            continue
        starts.append(s)
        ends.append(e)
        values.append(p.g_per_kwh)
    if not starts:
        return None
    return Forecast(
        np.asarray(starts, dtype=np.float64),
        np.asarray(ends, dtype=np.float64),
        np.asarray(values, dtype=np.float64),
        source,
        zone,
    )


ProviderFactoryFn = Callable[[ProviderConfig], Provider]


class CarbonCache:
    """Background-refreshed carbon data; :meth:`view` is the only thing scoring reads."""

    def __init__(
        self,
        config: CarbonConfig | None = None,
        *,
        clock: Callable[[], float] = wall,
        transport: httpx.AsyncBaseTransport | None = None,
        factory: ProviderFactoryFn | None = None,
        zones: Iterable[str] = (),
    ) -> None:
        self.clock = clock
        self._transport = transport
        self._factory = factory
        self.config = config or CarbonConfig()
        self._states: dict[str, ProviderState] = {}
        self._zones: set[str] = set(zones)
        self._wanted: set[str] = set()
        self._serving: dict[str, str] = {}
        self._running = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._background: set[asyncio.Task[None]] = set()
        self.errors: Counter[tuple[str, str]] = Counter()
        self.fallbacks: Counter[tuple[str, str]] = Counter()
        self._build_states(self.config)
        self._view = self._snapshot()

    # ------------------------------------------------------------------ public API

    def view(self) -> CarbonSnapshot:
        """The current immutable snapshot (never blocks)."""
        return self._view

    @property
    def zones(self) -> frozenset[str]:
        """Zones refreshed from live providers."""
        return frozenset(self._zones | self._wanted)

    def track(self, zones: Iterable[str]) -> None:
        """Ask for ``zones`` to be refreshed (the scheduler passes the zones of its nodes)."""
        new = set(zones) - self._zones
        if new:
            self._zones |= new
            self._wake_all()

    def providers(self) -> dict[str, Provider]:
        """Provider instances by name (for the CLI)."""
        return {name: st.provider for name, st in self._states.items()}

    async def start(self) -> None:
        """Spawn one refresh task per live provider on the running loop."""
        if self._running:
            return
        self._running = True
        self._loop = asyncio.get_running_loop()
        for st in self._states.values():
            self._spawn(st)

    async def stop(self) -> None:
        """Cancel refresh tasks and close provider clients."""
        self._running = False
        await cancel_all([st.task for st in self._states.values() if st.task is not None])
        for st in self._states.values():
            st.task = None
            await self._close(st.provider)

    async def refresh_once(self, *, force: bool = True) -> CarbonSnapshot:
        """Refresh every live provider once (``force`` ignores back-off) and publish."""
        live = [st for st in self._states.values() if not st.static]
        await asyncio.gather(*(self._refresh(st, force=force) for st in live))
        return self._publish()

    def reconfigure(self, config: CarbonConfig) -> None:
        """Hot-reload: keep state of unchanged providers, replace the rest, publish.

        Safe to call from another thread (a policy watcher): the change is then applied on the
        cache's event loop.
        """
        if self._running and self._loop is not None:
            try:
                running = asyncio.get_running_loop()
            except RuntimeError:
                running = None
            if running is not self._loop:
                self._loop.call_soon_threadsafe(self._apply, config)
                return
        self._apply(config)

    def _apply(self, config: CarbonConfig) -> None:
        old = self._states
        try:
            self._build_states(config, previous=old)
        except Exception:  # keep serving the last good configuration
            log.exception("carbon: new configuration rejected; keeping the previous one")
            self._states = old
            return
        self.config = config
        for name, st in old.items():
            if self._states.get(name) is not st:
                if st.task is not None:
                    st.task.cancel()
                self._close_later(st.provider)
        if self._running:
            for st in self._states.values():
                if st.task is None:
                    self._spawn(st)
        self._publish()

    # ------------------------------------------------------------------ internals

    def _build_states(
        self, config: CarbonConfig, previous: Mapping[str, ProviderState] | None = None
    ) -> None:
        states: dict[str, ProviderState] = {}
        for pc in config.chain():
            prev = (previous or {}).get(pc.name)
            if prev is not None and prev.config == pc:
                states[pc.name] = prev
                continue
            prov = (
                self._factory(pc)
                if self._factory
                else create_provider(pc, transport=self._transport, clock=self.clock)
            )
            table = MappingProxyType(static_values(pc)) if pc.type == STATIC_NAME else {}
            states[pc.name] = ProviderState(config=pc, provider=prov, table=table)
        self._states = states

    def _spawn(self, st: ProviderState) -> None:
        if st.static:
            return
        st.task = asyncio.get_running_loop().create_task(
            self._run(st), name=f"carbon-refresh-{st.config.name}"
        )

    async def _close(self, prov: Provider) -> None:
        try:
            await prov.aclose()
        except Exception as exc:
            log.debug("carbon: closing %s failed: %s", getattr(prov, "name", "?"), exc)

    def _close_later(self, prov: Provider) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        task = loop.create_task(self._close(prov))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _wake_all(self) -> None:
        for st in self._states.values():
            if self._loop is not None and not self._loop.is_closed():
                self._loop.call_soon_threadsafe(st.wake.set)

    def _note_miss(self, zone: str) -> None:
        # Called from readers: cheap, idempotent, thread-safe under the GIL.
        if zone in self._wanted or zone in self._zones:
            return
        self._wanted.add(zone)
        self._wake_all()

    async def _run(self, st: ProviderState) -> None:
        while True:
            try:
                await self._refresh(st, force=False)
                self._publish()
            except asyncio.CancelledError:
                raise
            except Exception:  # never let a bug kill the loop
                log.exception("carbon: refresh of %s crashed", st.config.name)
            now = self.clock()
            delay = st.config.refresh
            if st.next_attempt > now:
                delay = min(delay, st.next_attempt - now) if st.failures else delay
            st.wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(st.wake.wait(), timeout=max(0.05, delay))

    def _error(self, st: ProviderState, err: ProviderError, zone: str | None = None) -> None:
        name = st.config.name
        kind = err.kind
        self.errors[(name, kind)] += 1
        metrics.PROVIDER_ERRORS.labels(provider=name, kind=kind).inc()
        key = (kind, zone or "*")
        if key not in st.episodes:
            st.episodes[key] = self.clock()
            log.warning(
                "carbon: provider %s failing (%s)%s: %s; falling back along %s (logged once "
                "per episode)",
                name,
                kind,
                f" for zone {zone}" if zone else "",
                err,
                " -> ".join(self.config.fallback),
            )

    def _recovered(self, st: ProviderState, zone: str | None = None) -> None:
        keys = [k for k in st.episodes if (zone is None and k[1] == "*") or k[1] == zone]
        for key in keys:
            started = st.episodes.pop(key)
            log.info(
                "carbon: provider %s recovered from %s%s after %.0fs",
                st.config.name,
                key[0],
                f" for zone {zone}" if zone else "",
                self.clock() - started,
            )

    def _provider_failure(self, st: ProviderState, err: ProviderError) -> None:
        now = self.clock()
        st.failures += 1
        cfg = self.config
        schedule = Backoff(cfg.backoff.initial, cfg.backoff.max, floor=0.0, jitter=False)
        schedule.attempts = st.failures - 1
        delay = schedule.next_delay()
        if err.retry_after is not None:
            delay = max(delay, err.retry_after)
        if st.failures >= cfg.circuit.failures:
            delay = max(delay, cfg.circuit.open_for)
            if not st.circuit_open:
                st.circuit_open = True
                metrics.CIRCUIT_OPEN.labels(provider=st.config.name).set(1)
                log.warning(
                    "carbon: circuit open for provider %s after %d consecutive failures; next "
                    "try in %.0fs",
                    st.config.name,
                    st.failures,
                    delay,
                )
        st.next_attempt = now + delay

    def _provider_success(self, st: ProviderState) -> None:
        if st.circuit_open:
            st.circuit_open = False
            metrics.CIRCUIT_OPEN.labels(provider=st.config.name).set(0)
            log.info("carbon: circuit closed for provider %s", st.config.name)
        st.failures = 0
        st.next_attempt = 0.0
        self._recovered(st)

    async def _call(self, st: ProviderState, awaitable: object) -> object:
        """Await a provider call with a wall-clock guard; classify unexpected exceptions."""
        limit = st.config.timeout * 2 + 1.0
        try:
            return await asyncio.wait_for(awaitable, timeout=limit)  # type: ignore[arg-type]
        except ProviderError:
            raise
        except TimeoutError:
            raise ProviderError(
                "timeout", f"call exceeded {limit:.1f}s", provider=st.config.name
            ) from None
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            raise ProviderError(
                "bad_response", f"{type(exc).__name__}: {exc}", provider=st.config.name
            ) from None

    async def _refresh(self, st: ProviderState, *, force: bool) -> None:
        if st.static:
            return
        now = self.clock()
        if not force and now < st.next_attempt:
            return
        self._zones |= self._wanted
        self._wanted.clear()
        zones = sorted(z for z in self._zones if st.unknown_until.get(z, 0.0) <= now)
        if not zones:
            return
        points: list[IntensityPoint] = []
        zone_errors: dict[str, ProviderError] = {}
        provider_error: ProviderError | None = None
        try:
            points = list(await self._call(st, st.provider.latest(zones)))  # type: ignore[call-overload]
        except PartialFailure as pf:
            points, zone_errors = list(pf.points), dict(pf.errors)
        except ProviderError as err:
            if err.kind in ZONE_LEVEL and err.zone is not None:
                zone_errors[err.zone] = err
            elif err.kind in ZONE_LEVEL and len(zones) == 1:
                zone_errors[zones[0]] = err
            else:
                provider_error = err
        for zone, zerr in list(zone_errors.items()):
            # in a partial answer only health errors count against the provider
            if zerr.kind in PROVIDER_HEALTH and provider_error is None:
                provider_error = zerr
                del zone_errors[zone]
        accepted: list[str] = []
        for p in points:
            if p.zone not in zones:
                continue
            if not valid_value(p.g_per_kwh):
                zone_errors[p.zone] = ProviderError(
                    "invalid_value",
                    f"{p.g_per_kwh} gCO2e/kWh is outside 0..{MAX_G_PER_KWH:.0f}",
                    provider=st.config.name,
                    zone=p.zone,
                )
                continue
            st.latest[p.zone] = Latest(p.g_per_kwh, p.start.timestamp(), p.estimated, p.kind)
            accepted.append(p.zone)
            self._recovered(st, p.zone)
        for zone, zerr in zone_errors.items():
            self._error(st, zerr, zone)
            if zerr.kind == "unknown_zone":
                st.unknown_until[zone] = now + UNKNOWN_ZONE_RETRY_S
        if provider_error is not None:
            self._error(st, provider_error)
            self._provider_failure(st, provider_error)
            return
        if accepted or not zone_errors:
            self._provider_success(st)
        if st.config.forecast:
            await self._refresh_forecasts(st, accepted)

    async def _refresh_forecasts(self, st: ProviderState, zones: list[str]) -> None:
        now = self.clock()
        start, end = utc(now), utc(now) + timedelta(seconds=st.config.forecast_horizon)

        async def one(zone: str) -> None:
            try:
                pts = list(await self._call(st, st.provider.forecast(zone, start, end)))  # type: ignore[call-overload]
            except ProviderError as err:
                err.zone = err.zone or zone
                if err.kind in ZONE_LEVEL or err.status in (401, 403, 404):
                    # forecasts are often a paid add-on: count, log once, keep latest-only
                    self._error(st, err, zone)
                    st.forecasts.pop(zone, None)
                    return
                self._error(st, err)
                return
            good = [p for p in pts if valid_value(p.g_per_kwh)]
            if len(good) < len(pts):
                self._error(
                    st,
                    ProviderError(
                        "invalid_value",
                        f"{len(pts) - len(good)} forecast point(s) outside 0..2000 dropped",
                        provider=st.config.name,
                        zone=zone,
                    ),
                    zone,
                )
            fc = _forecast_arrays(good, st.config.name, zone)
            if fc is None:
                st.forecasts.pop(zone, None)
            else:
                st.forecasts[zone] = fc

        await asyncio.gather(*(one(z) for z in zones))

    def _snapshot(self) -> CarbonSnapshot:
        sources = []
        for st in self._states.values():
            sources.append(
                Source(
                    name=st.config.name,
                    kind=st.config.signal,
                    static=st.static,
                    latest=MappingProxyType(dict(st.latest)),
                    forecasts=MappingProxyType(dict(st.forecasts)),
                    static_values=st.table,
                )
            )
        return CarbonSnapshot(
            tuple(sources),
            stale_after=self.config.stale_after,
            clock=self.clock,
            on_miss=self._note_miss,
        )

    def _publish(self) -> CarbonSnapshot:
        snap = self._snapshot()
        self._view = snap
        primary = self.config.fallback[0]
        kind = self.config.provider(primary).signal  # judge fallbacks in the primary's signal
        for zone in sorted(self._zones):
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
        return snap
