"""The carbon cache: per-provider state and background refresh, publishing immutable snapshots.

``CarbonCache.view()`` returns the current :class:`~carbon.snapshot.CarbonSnapshot` (a reference
swap after every refresh; see :mod:`carbon.snapshot` for what readers get). Providers are
refreshed on their own interval with per-provider exponential back-off, Retry-After, call
timeouts and a circuit breaker; values outside 0..2,000 g/kWh are rejected. Every error is
counted; each failure episode (and each switch of a zone to a fallback) is logged once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from types import MappingProxyType
from typing import Final

import httpx

from carbon import metrics
from carbon.aio import cancel_all
from carbon.backoff import Backoff
from carbon.clock import wall
from carbon.config import STATIC_NAME, CarbonConfig, ProviderConfig
from carbon.intensity import MAX_G_PER_KWH, valid_value
from carbon.longrun import RecentReadings
from carbon.providers.base import PartialFailure, Provider, ProviderError, utc
from carbon.providers.registry import create_provider
from carbon.providers.static import static_values
from carbon.serving import ServingLog
from carbon.snapshot import CarbonSnapshot, Forecast, Latest, Source, forecast_from_points
from carbon.types import IntensityPoint

log = logging.getLogger("lowcarb.carbon.cache")

ZONE_LEVEL: Final[frozenset[str]] = frozenset({"unknown_zone", "invalid_value", "empty"})
# kinds that say the provider itself is unhealthy (back off / circuit), even for one zone
PROVIDER_HEALTH: Final[frozenset[str]] = frozenset(
    {"timeout", "network", "server", "rate_limited", "auth"}
)
UNKNOWN_ZONE_RETRY_S: Final = 3600.0


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
    recent: RecentReadings = field(default_factory=RecentReadings)

    @property
    def static(self) -> bool:
        """True for the static provider type (served from its table, never refreshed)."""
        return self.config.type == STATIC_NAME

    def source(self) -> Source:
        """What this provider contributes to a snapshot now (read-only copies)."""
        return Source(
            name=self.config.name,
            kind=self.config.signal,
            static=self.static,
            latest=MappingProxyType(dict(self.latest)),
            forecasts=MappingProxyType(dict(self.forecasts)),
            static_values=self.table,
            long_run=MappingProxyType(self.recent.means()),
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
        self._served = ServingLog()
        self._running = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._background: set[asyncio.Task[None]] = set()
        self.errors: Counter[tuple[str, str]] = Counter()
        self._build_states(self.config)
        self._view = self._snapshot()

    # ------------------------------------------------------------------ public API

    def view(self) -> CarbonSnapshot:
        """The current immutable snapshot (never blocks)."""
        return self._view

    @property
    def fallbacks(self) -> Counter[tuple[str, str]]:
        """Switches of a zone to a fallback source, by (zone, source)."""
        return self._served.fallbacks

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
            st.recent.add(p.zone, p.start.timestamp(), p.g_per_kwh)
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
            fc = forecast_from_points(good, st.config.name, zone)
            if fc is None:
                st.forecasts.pop(zone, None)
            else:
                st.forecasts[zone] = fc

        await asyncio.gather(*(one(z) for z in zones))

    def _snapshot(self) -> CarbonSnapshot:
        return CarbonSnapshot(
            tuple(st.source() for st in self._states.values()),
            stale_after=self.config.stale_after,
            clock=self.clock,
            on_miss=self._note_miss,
        )

    def _publish(self) -> CarbonSnapshot:
        snap = self._snapshot()
        self._view = snap
        primary = self.config.fallback[0]
        kind = self.config.provider(primary).signal  # judge fallbacks in the primary's signal
        self._served.record(snap, sorted(self._zones), primary, kind)
        return snap
