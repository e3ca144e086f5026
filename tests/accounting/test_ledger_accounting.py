"""Accounting: energy (model or Prometheus), hourly emissions, market, embodied, avoided."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import msgspec
import pytest
from pydantic import ValidationError

from carbon.accounting.accountant import Accountant, ChainHistory
from carbon.accounting.emissions import compute_usage, integrate
from carbon.accounting.ledger import GateRecord, Ledger, UsageRecord, open_reader, read_records
from carbon.accounting.prometheus import PrometheusMeter
from carbon.accounting.settings import AccountingPolicy, PrometheusConfig
from carbon.datadir import data_dir
from carbon.energy import GpuPower, PowerModel
from tests.support.ledger import ListHistory, em_history_points, hourly, placement, run

DAY = datetime(2023, 6, 14, tzinfo=UTC)
H = 3600.0
POWER = PowerModel(
    gpus=(GpuPower(match="A100", watts=300, relativeSpeed=1.0, embodiedGPerHour=20.0),),
    builtinGpus=False,
    defaultGpu=GpuPower(match=".*", watts=100, embodiedGPerHour=5.0),
    cpuWattsPerCore=5.0,
    memoryWattsPerGiB=0.5,
    pue=1.1,
    pueByZone={"DE": 1.3},
    pueByRegion={"europe-west3": 1.05},
)


def at(hour: float) -> float:
    return DAY.timestamp() + hour * H


def test_integrate_weights_each_hour_by_its_overlap_with_the_run() -> None:
    pts = em_history_points()
    got = integrate(pts, at(2.5), at(5.5), fallback=None)
    # fixture hours 02..05: 353, 365, 364, 351; the run covers half of the first and last
    assert got.mean_g_per_kwh == pytest.approx((0.5 * 353 + 365 + 364 + 0.5 * 351) / 3)
    assert got.estimated_fraction == 0.0


def test_integrate_counts_estimated_points_and_gaps() -> None:
    pts = em_history_points()  # 22:00 (430) and 23:00 (434) are flagged estimated
    got = integrate(pts, at(21), at(23), fallback=None)
    assert got.mean_g_per_kwh == pytest.approx((430 + 430) / 2)
    assert got.estimated_fraction == pytest.approx(0.5)
    # half an hour beyond the history is filled with the decision-time value
    got = integrate(pts, at(23.5), at(24.5), fallback=300.0)
    assert got.mean_g_per_kwh == pytest.approx((434 + 300) / 2)
    assert got.estimated_fraction == pytest.approx(1.0)


def test_compute_usage_model_energy_location_market_embodied() -> None:
    pl = placement(
        0, at(2), zone="DE", gpu_model="NVIDIA-A100-SXM4-80GB", gpus=1, gpu_milli=1000,
        cpu_milli=8000, memory_bytes=32 * 2**30, counterfactual_kg=1.5, expected_kg=1.2,
    )  # fmt: skip
    policy = AccountingPolicy(market_factors={"DE": 40.0})
    u = compute_usage(pl, at(2.5), at(5.5), em_history_points(), power=POWER, policy=policy)
    kwh = (300 + 8 * 5.0 + 32 * 0.5) * 1.3 * 3 / 1000  # IT watts x PUE(DE) x 3 h
    mean_g = (0.5 * 353 + 365 + 364 + 0.5 * 351) / 3
    assert u.energy_kwh == pytest.approx(kwh)
    assert u.method == "model"
    assert u.co2e_location_kg == pytest.approx(kwh * mean_g / 1000)
    assert (u.co2e_market_kg, u.market_basis) == (pytest.approx(kwh * 40 / 1000), "contract")
    assert u.gpu_hours == pytest.approx(3.0)
    assert u.embodied_kg == pytest.approx(20.0 * 3 / 1000)
    # counterfactual: mean expected over candidates / expected on the chosen node = 1.25
    assert u.counterfactual_kg == pytest.approx(u.co2e_location_kg * 1.25)
    assert u.avoided_kg == pytest.approx(u.co2e_location_kg * 0.25)
    assert (u.day, u.job, u.estimated_kg) == ("2023-06-14", "ml-research/Job/run-0", 0.0)
    # the site's PUE by region label wins over the zone's
    in_region = msgspec.structs.replace(pl, region="europe-west3")
    u2 = compute_usage(in_region, at(2.5), at(5.5), em_history_points(), power=POWER, policy=policy)
    assert u2.energy_kwh == pytest.approx(kwh / 1.3 * 1.05)


def test_shared_gpu_residual_mix_and_location_fallback() -> None:
    pts = hourly("FR", DAY, [60.0] * 24)
    shared = placement(1, at(0), zone="FR", gpu_model="Tesla-V100", gpus=1, gpu_milli=460)
    u = compute_usage(
        shared, at(1), at(3), pts, power=POWER,
        policy=AccountingPolicy(residual_mix={"FR": 90.0}),
    )  # fmt: skip
    assert u.gpu_hours == pytest.approx(0.46 * 2)
    assert u.embodied_kg == pytest.approx(5.0 * 0.46 * 2 / 1000)  # default GPU entry
    assert u.market_basis == "residual"
    assert u.co2e_market_kg == pytest.approx(u.energy_kwh * 90 / 1000)
    u = compute_usage(shared, at(1), at(3), pts, power=POWER, policy=AccountingPolicy())
    assert u.market_basis == "location"
    assert u.co2e_market_kg == pytest.approx(u.co2e_location_kg)
    multi = placement(2, at(0), zone="FR", gpu_model="NVIDIA-A100", gpus=2, gpu_milli=460)
    u = compute_usage(multi, at(1), at(3), pts, power=POWER, policy=AccountingPolicy())
    assert u.gpu_hours == pytest.approx(4.0)  # several GPUs are whole GPUs


def test_counterfactual_with_gate_hold_and_intensity_fallback() -> None:
    pts = hourly("DE", DAY, [200.0] * 24)
    pl = placement(0, at(0), zone="DE", counterfactual_kg=None, expected_kg=None)
    gate = GateRecord(
        uid=pl.uid, namespace=pl.namespace, name=pl.name, held_at=at(0),
        planned_release=at(4), actual_release=at(4),
        intensity_now_g_per_kwh=310.0, intensity_release_g_per_kwh=118.0,
    )  # fmt: skip
    u = compute_usage(pl, at(4), at(6), pts, power=POWER, policy=AccountingPolicy(), gate=gate)
    spatial = 240.0 / 350.0  # counterfactual intensity / intensity used (placement(0) values)
    assert u.counterfactual_kg == pytest.approx(u.co2e_location_kg * spatial * 310 / 118)
    assert u.avoided_kg == pytest.approx(u.counterfactual_kg - u.co2e_location_kg)


def test_policy_errors_name_the_field() -> None:
    with pytest.raises(ValidationError, match="marketFactors") as err:
        AccountingPolicy.model_validate({"marketFactors": {"DE": -3}})
    assert "use gCO2e/kWh between 0 and 2000" in str(err.value)
    with pytest.raises(ValidationError, match="residualMixx"):
        AccountingPolicy.model_validate({"residualMixx": {}})
    with pytest.raises(ValidationError, match="http:// or https://"):
        PrometheusConfig(url="prometheus:9090")


async def _ledger_with_runs(path: Path, pods: list[tuple[int, float, float]]) -> Ledger:
    ledger = Ledger(path)
    for i, start, end in pods:
        await ledger.append_async(
            placement(i, start - 60, zone="DE", gpu_model="NVIDIA-A100", gpus=1)
        )
        for rec in run(f"uid-{i:06d}", start, end):
            await ledger.append_async(rec)
    return ledger


async def test_accountant_accounts_once_and_batches_history_per_zone(tmp_path: Path) -> None:
    ledger = await _ledger_with_runs(
        tmp_path / "l.sqlite", [(0, at(1), at(3)), (3, at(2), at(8)), (6, at(10), at(11))]
    )
    # a pod placed but still running is not accounted
    await ledger.append_async(placement(9, at(1), zone="DE"))
    await ledger.append_async(run("uid-000009", at(2), at(9))[0])
    history = ListHistory({"DE": em_history_points()})
    with ledger:
        acc = Accountant(ledger, history, power=POWER)
        assert await acc.account_pending() == 3
        assert await acc.account_pending() == 0
    assert len(history.calls) == 1  # one history call per zone, covering all runs
    assert history.calls[0][1:] == (DAY + timedelta(hours=1), DAY + timedelta(hours=11))
    reader = open_reader(ledger.path)
    rows = {u.uid: u for u in read_records(reader, UsageRecord)}
    reader.close()
    assert sorted(rows) == ["uid-000000", "uid-000003", "uid-000006"]
    u = rows["uid-000006"]
    assert u.co2e_location_kg == pytest.approx(u.energy_kwh * 200 / 1000)  # 10:00 = 200 g


async def test_provider_down_falls_back_to_decision_intensity(tmp_path: Path) -> None:
    ledger = await _ledger_with_runs(tmp_path / "l.sqlite", [(0, at(1), at(3))])
    with ledger:
        acc = Accountant(ledger, ListHistory({}, fail=True), power=POWER)
        assert await acc.account_pending() == 1
    reader = open_reader(ledger.path)
    (u,) = read_records(reader, UsageRecord)
    reader.close()
    assert u.co2e_location_kg == pytest.approx(u.energy_kwh * 350 / 1000)  # placement(0) value
    assert u.estimated_kg == pytest.approx(u.co2e_location_kg)
    assert u.note is not None and "history unavailable" in u.note


async def test_no_intensity_at_all_leaves_pod_for_a_later_pass(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "l.sqlite")
    await ledger.append_async(placement(0, at(0), zone="DE", intensity_g_per_kwh=None))
    for rec in run("uid-000000", at(1), at(2)):
        await ledger.append_async(rec)
    await ledger.append_async(placement(1, at(0), zone="DE"))
    for rec in run("uid-000001", at(1), at(3)):
        await ledger.append_async(rec)
    with ledger:
        acc = Accountant(ledger, ListHistory({}), power=POWER)
        # limit 1: the unaccountable pod (ended first) must not block the next one
        assert await acc.account_pending(limit=1) == 0
        assert await acc.account_pending(limit=1) == 1
        assert acc.unaccountable == {"uid-000000"}
        later = ListHistory({"DE": hourly("DE", DAY, [100.0] * 24)})
        assert await Accountant(ledger, later, power=POWER).account_pending() == 1


async def test_missing_start_event_uses_decision_time(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "l.sqlite")
    await ledger.append_async(placement(0, at(1), zone="DE"))
    await ledger.append_async(run("uid-000000", at(1), at(3))[1])  # only the end was seen
    with ledger:
        await Accountant(ledger, ListHistory({"DE": em_history_points()})).account_pending()
    reader = open_reader(ledger.path)
    (u,) = read_records(reader, UsageRecord)
    reader.close()
    assert (u.start, u.end) == (at(1), at(3))
    assert u.note is not None and "decision time used as start" in u.note


class _Prometheus:
    """A Prometheus HTTP API on 127.0.0.1 answering /api/v1/query from a callback."""

    def __init__(self, answer: Callable[[dict[str, str]], tuple[int, dict[str, Any]]]) -> None:
        self.queries: list[dict[str, str]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                url = urlparse(self.path)
                params = {k: v[0] for k, v in parse_qs(url.query).items()}
                outer.queries.append({"path": url.path, **params})
                status, body = answer(params)
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _vector(value: str | None) -> tuple[int, dict[str, Any]]:
    result = [] if value is None else [{"metric": {}, "value": [1686711600.0, value]}]
    return 200, {"status": "success", "data": {"resultType": "vector", "result": result}}


@pytest.fixture
def prometheus() -> Iterator[Callable[..., _Prometheus]]:
    servers: list[_Prometheus] = []

    def make(answer: Callable[[dict[str, str]], tuple[int, dict[str, Any]]]) -> _Prometheus:
        servers.append(_Prometheus(answer))
        return servers[-1]

    yield make
    for s in servers:
        s.close()


async def _account_one(tmp_path: Path, policy: AccountingPolicy) -> UsageRecord:
    ledger = await _ledger_with_runs(tmp_path / "l.sqlite", [(0, at(2), at(4))])
    with ledger:
        acc = Accountant(ledger, ListHistory({"DE": em_history_points()}), power=POWER,
                         policy=policy)  # fmt: skip
        assert await acc.account_pending() == 1
        assert acc.meter is not None
        await acc.meter.aclose()
    reader = open_reader(ledger.path)
    (u,) = read_records(reader, UsageRecord)
    reader.close()
    return u


async def test_kepler_energy_from_prometheus(
    tmp_path: Path, prometheus: Callable[..., _Prometheus]
) -> None:
    prom = prometheus(lambda q: _vector("2880000"))  # 2.88 MJ = 0.8 kWh of IT energy
    u = await _account_one(tmp_path, AccountingPolicy(prometheus=PrometheusConfig(url=prom.url)))
    (q,) = prom.queries
    assert q["path"] == "/api/v1/query"
    assert q["query"] == (
        'sum(increase(kepler_container_joules_total{container_namespace="ml-research",'
        'pod_name="pod-000000"}[7200s]))'
    )
    assert float(q["time"]) == pytest.approx(at(4))
    assert u.method == "kepler"
    assert u.energy_kwh == pytest.approx(0.8 * 1.3)  # x PUE of DE
    assert u.co2e_location_kg == pytest.approx(u.energy_kwh * (353 + 365) / 2 / 1000)


async def test_dcgm_energy_adds_modelled_cpu_and_memory(
    tmp_path: Path, prometheus: Callable[..., _Prometheus]
) -> None:
    prom = prometheus(lambda q: _vector("1800000000"))  # mJ: 1.8 MJ of GPU energy
    cfg = PrometheusConfig(url=prom.url, source="dcgm")
    u = await _account_one(tmp_path, AccountingPolicy(prometheus=cfg))
    assert "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION" in prom.queries[0]["query"]
    pl = placement(0, 0.0)
    host_w = pl.cpu_milli / 1000 * 5.0 + pl.memory_bytes / 2**30 * 0.5
    assert u.method == "dcgm+model"
    assert u.energy_kwh == pytest.approx((1.8e6 + host_w * 7200) * 1.3 / 3.6e6)


@pytest.mark.parametrize(
    ("answer", "note"),
    [
        (lambda q: _vector(None), "no energy series"),
        (lambda q: (500, {"status": "error", "errorType": "internal", "error": "boom"}), "failed"),
        (lambda q: (200, {"status": "error", "errorType": "bad_data", "error": "x"}), "bad_data"),
    ],
)
async def test_prometheus_problems_fall_back_to_the_model(
    tmp_path: Path,
    prometheus: Callable[..., _Prometheus],
    answer: Callable[[dict[str, str]], tuple[int, dict[str, Any]]],
    note: str,
) -> None:
    prom = prometheus(answer)
    u = await _account_one(tmp_path, AccountingPolicy(prometheus=PrometheusConfig(url=prom.url)))
    assert u.method == "model"
    assert u.note is not None and note in u.note
    assert u.energy_kwh == pytest.approx(
        POWER.it_watts("NVIDIA-A100", 1, 4.0, 16.0) * 1.3 * 2 / 1000
    )


def test_promql_label_values_are_escaped() -> None:
    meter = PrometheusMeter(PrometheusConfig(url="http://127.0.0.1:9"))
    assert 'pod_name="we\\"ird\\\\pod"' in meter.query("ns", 'we"ird\\pod', 10)


async def test_replay_provider_history_of_real_2023_series(tmp_path: Path) -> None:
    root = data_dir()
    if root is None:
        pytest.skip("LOWCARB_DATA / ../shared/data not available: real DE 2023 series needed")
    import pandas as pd

    from carbon.config import ProviderConfig
    from carbon.providers.replay import ReplayProvider

    provider = ReplayProvider(ProviderConfig(name="replay", options={"year": 2023, "shift": False}))
    start = datetime(2023, 3, 7, 22, 30, tzinfo=UTC).timestamp()
    ledger = await _ledger_with_runs(tmp_path / "l.sqlite", [(0, start, start + 6 * H)])
    with ledger:
        assert await Accountant(ledger, provider, power=POWER).account_pending() == 1
    reader = open_reader(ledger.path)
    (u,) = read_records(reader, UsageRecord)
    reader.close()
    csv = root / "carbon" / "electricitymaps_portal" / "DE-LU" / "DE-LU_2023_hourly.csv"
    df = pd.read_csv(csv)
    ts = pd.to_datetime(df["Datetime (UTC)"], utc=True)
    lca = df[next(c for c in df.columns if "LCA" in c)].to_numpy()
    first = int((ts == pd.Timestamp("2023-03-07 22:00", tz="UTC")).to_numpy().argmax())
    v = lca[first : first + 7]
    expected_mean = (0.5 * v[0] + v[1:6].sum() + 0.5 * v[6]) / 6
    assert u.co2e_location_kg == pytest.approx(u.energy_kwh * expected_mean / 1000)
    assert u.estimated_kg == 0.0


async def test_settle_time_waits_for_late_history(tmp_path: Path) -> None:
    now = (DAY + timedelta(hours=12)).timestamp()
    ledger = Ledger(tmp_path / "l.sqlite")
    await ledger.append_async(placement(0, now - 3 * H, zone="DE"))
    for rec in run("uid-000000", now - 2 * H, now - 60):  # ended a minute ago
        await ledger.append_async(rec)
    with ledger:
        acc = Accountant(ledger, ListHistory({}), power=POWER, clock=lambda: now)
        assert await acc.account_pending(settle_s=3600) == 0
        assert await acc.account_pending(settle_s=30) == 1


async def test_the_service_accountant_dates_by_the_pinned_clock(
    tmp_path: Path, pin_clock: Callable[[datetime], None]
) -> None:
    """Without a clock argument (as in ``lowcarb serve``) settling and stamps use carbon.clock."""
    far = datetime(2031, 7, 1, 12, tzinfo=UTC)  # years after today: the system date would not do
    pin_clock(far)
    now = far.timestamp()
    ledger = Ledger(tmp_path / "l.sqlite")
    await ledger.append_async(placement(0, now - 3 * H, zone="DE"))
    for rec in run("uid-000000", now - 2 * H, now - 60):  # ended a minute before the pinned now
        await ledger.append_async(rec)
    with ledger:
        acc = Accountant(ledger, ListHistory({}), power=POWER)
        assert await acc.account_pending(settle_s=3600) == 0
        assert await acc.account_pending(settle_s=30) == 1
    reader = open_reader(ledger.path)
    (u,) = read_records(reader, UsageRecord)
    reader.close()
    assert now <= u.accounted_at < now + 60


async def test_chain_history_follows_the_fallback_chain() -> None:
    down = ListHistory({}, fail=True)
    empty = ListHistory({})
    live = ListHistory({"DE": em_history_points()})
    chain = ChainHistory(lambda: [down, empty, live])
    got = await chain.history("DE", DAY, DAY + timedelta(hours=2))
    assert [p.g_per_kwh for p in got] == [338.0, 346.0]
    assert len(down.calls) == len(empty.calls) == 1
    with pytest.raises(ConnectionError):
        await ChainHistory(lambda: [empty, down]).history("DE", DAY, DAY + timedelta(hours=1))
    assert await ChainHistory(lambda: [empty]).history("FR", DAY, DAY) == []
