"""Render deploy/monitoring/dashboard.json from real data into a PNG (the README's picture).

Grafana is not needed: every panel's own PromQL ``expr`` is sent to a real Prometheus, which
scraped a real ``lowcarb serve`` while a driver replayed kube-scheduler's calls, and the answers
are drawn with matplotlib in the dashboard's grid layout (``gridPos``). On loopback only:

* the Kubernetes API is the test suite's fake API server (``tests/support/fakeapi.py``: nodes
  from the recorded node list, three regions, a pod store that answers Bindings, patches and
  watches like kube-apiserver);
* ``lowcarb serve --kubeconfig --ledger --accounting-interval 10`` with a policy serving the
  recorded 2023 hourly series of ``$LOWCARB_DATA`` (replay provider, refreshed every 30 s) for
  the three zones, a 10 s ``accounting.settleAfter`` and a ``temporalShift`` on the default class
  (``maxDelay`` 15 min, ``minSaving`` 10 %); its clock (``LOWCARB_NOW``) starts half the run
  before the first hour boundary after ``--after`` at which the cleanest zone gets ``DROP``
  cleaner, so gated pods are really held for it and then released;
* ``prometheus`` (Debian's package) scraping it every 2 s;
* the driver: every second a pod shaped like the captured kube-scheduler request
  (``tests/fixtures/kube-scheduler``: the same Pod, Nodes and Go field names) with 1, 2 or 4
  GPUs or a GPU share is created, sent through filter, prioritize and bind exactly as
  kube-scheduler sends them, runs 20-90 s and succeeds; every 10th pod is gated for a cleaner
  hour instead (deadline 10 min, expected run 1 min), and scheduled the same way once the gate
  controller releases it.

Grafana's variables are replaced as Grafana would for this window: ``$__rate_interval`` = 20 s
(four scrapes and a bit), ``$__range`` = the whole run, ``$job`` = every job. Prints one JSON line
with the panels drawn and how many series each query returned.

Prints the run's figures too (most pods held at once, releases by reason, emissions avoided).
Usage: ``python benchmarks/dashboard.py [--minutes 6] [--after 2023-06-01T00:00:00+00:00]
[--out docs/dashboard.png]``.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
import numpy as np

from carbon.clock import offset, pin, wall
from carbon.datadir import data_dir
from carbon.series import load_zone_year
from scheduler.names import ANN_DEADLINE, ANN_DURATION, ANN_GPU_MILLI, GATE
from tests.support.fakeapi import (
    FakeApiServer,
    PodStore,
    Reply,
    WatchReply,
    fixture,
    free_port,
    write_kubeconfig,
)

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "deploy" / "monitoring" / "dashboard.json"
CAPTURED = ROOT / "tests" / "fixtures" / "kube-scheduler" / "v1.36.2"
SCRAPE_S = 2
RATE_INTERVAL = "20s"
ZONES = {"us-east": "US-MIDA-PJM", "us-west": "US-CAL-CISO", "eu-central": "GB"}
YEAR = 2023
DROP = 0.2  # the hour boundary the run straddles: the cleanest zone gets this much cleaner
POLICY = f"""\
apiVersion: lowcarb.dev/v2
carbon:
  providers:
    - name: replay
      refresh: 30s
      options: {{year: {YEAR}, shift: false}}
  fallback: [replay, static]
  zones: {json.dumps(ZONES)}
accounting:
  settleAfter: 10s
classes:
  default:
    description: Every pod (the render's only class)
    temporalShift: {{maxDelay: 15m, minSaving: 10%}}
"""
GATED_EVERY = 10  # every 10th pod is gated for a cleaner hour
GATED_ANNOTATIONS = {ANN_DEADLINE: "10m", ANN_DURATION: "1m"}


# --- the run ------------------------------------------------------------------------------------


def wait(what: str, check: Any, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"dashboard: timed out waiting for {what}")
        time.sleep(0.2)


def listening(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.TransportError:
        return False


class Driver:
    """kube-scheduler's part: create pods, filter/prioritize/bind them, run them to the end."""

    def __init__(self, store: PodStore, base: str, seed: int = 7) -> None:
        self.store = store
        self.base = base
        self.http = httpx.Client(timeout=10)
        self.random = random.Random(seed)
        self.filter_args = json.loads(
            (CAPTURED / "filter.args.nodeCacheCapable-false.json").read_text()
        )
        self.bind_args = json.loads(
            (CAPTURED / "bind.args.nodeCacheCapable-false.json").read_text()
        )
        self.count = 0
        self.ends: dict[str, float] = {}  # running pod -> when it succeeds
        self.gated: set[str] = set()
        self.calls = 0

    def tick(self, now: float) -> None:
        self.count += 1
        gated = self.count % GATED_EVERY == 0
        name = f"job-{self.count:04d}"
        self.create(name, gated)
        if gated:
            self.gated.add(name)
        else:
            self.schedule(name, now)
        for waiting in sorted(self.gated):  # released by the gate controller: schedule it now
            if not self.store.gates(waiting):
                self.gated.discard(waiting)
                self.schedule(waiting, now)
        for running, end in list(self.ends.items()):
            if end <= now:
                del self.ends[running]
                self.store.set_phase(running, "Succeeded")

    def create(self, name: str, gated: bool) -> None:
        pod = self.filter_args["Pod"]
        spec = copy.deepcopy(pod["spec"])
        gpus = self.random.choice(["1", "1", "2", "4"])
        requests = spec["containers"][0]["resources"]["requests"]
        requests["nvidia.com/gpu"] = spec["containers"][0]["resources"]["limits"][
            "nvidia.com/gpu"
        ] = gpus
        requests["cpu"], requests["memory"] = str(2 * int(gpus)), f"{16 * int(gpus)}Gi"
        annotations: dict[str, str] = {}
        if gpus == "1" and self.random.random() < 0.4:
            annotations[ANN_GPU_MILLI] = str(self.random.choice([250, 500]))
        if gated:
            annotations |= GATED_ANNOTATIONS
        created = datetime.fromtimestamp(wall(), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        self.store.add_pod(
            name,
            created=created,  # on lowcarb's clock (LOWCARB_NOW); deadlines count from creation
            annotations=annotations,
            labels=dict(pod["metadata"]["labels"]),
            gates=[GATE] if gated else [],
            uid=f"uid-{name}",
            spec=spec,
        )

    def schedule(self, name: str, now: float) -> None:
        pod = copy.deepcopy(self.store.pods[name])
        pod.setdefault("status", {})["phase"] = "Pending"
        args = {**self.filter_args, "Pod": pod}
        self.calls += 3
        filtered = self.http.post(f"{self.base}/filter", json=args).json()
        nodes = filtered.get("Nodes") or {"items": []}
        if not nodes["items"]:
            return  # no room now: kube-scheduler would retry later; this driver drops it
        args["Nodes"] = nodes
        scores = self.http.post(f"{self.base}/prioritize", json=args).json()
        best = max(scores, key=lambda s: (s["Score"], s["Host"]))["Host"]
        meta = pod["metadata"]
        bind = {**self.bind_args, "PodName": name, "PodNamespace": meta["namespace"]}
        bind |= {"PodUID": meta["uid"], "Node": best}
        if self.http.post(f"{self.base}/bind", json=bind).json().get("Error"):
            return
        self.store.set_phase(name, "Running")
        self.ends[name] = now + self.random.uniform(20, 90)


def prometheus_time() -> float:
    """The system clock (Prometheus's), not lowcarb's moved one."""
    return wall() - offset()


def cleaner_hour(after: str) -> float:
    """The first hour boundary at or after ``after`` where the cleanest of the render's zones
    gets at least ``DROP`` cleaner than the cleanest one the hour before (epoch seconds)."""
    series = [load_zone_year(zone, YEAR) for zone in ZONES.values()]
    cleanest = np.vstack([s.values for s in series]).min(axis=0)
    starts = series[0].starts
    drops = np.flatnonzero(cleanest[1:] <= (1 - DROP) * cleanest[:-1]) + 1
    drops = drops[starts[drops] >= datetime.fromisoformat(after).timestamp()]
    if drops.size == 0:
        raise SystemExit(f"dashboard: no hour after {after} is {DROP:.0%} cleaner in {YEAR}")
    return float(starts[drops[0]])


def run(minutes: float, workdir: Path, at: float) -> tuple[str, float, float]:
    """Drive lowcarb for ``minutes`` under a Prometheus, lowcarb's clock starting at ``at``;
    returns (Prometheus URL, start, end) in Prometheus's (the system's) time. The processes stay
    up (the caller queries, then stops them through ``STOP``)."""
    api = FakeApiServer().start()
    STOP.append(api.stop)
    store = PodStore(api).install()
    api.add("GET", "/api/v1/nodes", Reply(200, fixture("nodes-list.json")), watch=False)
    api.add("GET", "/api/v1/nodes", WatchReply([]), watch=True)
    policy = workdir / "policy.yaml"
    policy.write_text(POLICY)
    port = free_port()
    serve = [str(Path(sys.executable).parent / "lowcarb"), "serve", "--host", "127.0.0.1"]
    serve += ["--port", str(port), "--kubeconfig", str(write_kubeconfig(workdir / "kc", api.url))]
    serve += ["--policy", str(policy), "--ledger", str(workdir / "ledger.sqlite")]
    serve += ["--accounting-interval", "10", "--log-level", "warning"]
    env = dict(os.environ) | {"LOWCARB_NOW": f"{at:.3f}"}
    found = data_dir()
    if found is not None:
        env.setdefault("LOWCARB_DATA", str(found))
    pin(at)  # the driver's clock (pods' creation times) and lowcarb's start together
    start_process(serve, workdir / "serve.log", env)
    base = f"http://127.0.0.1:{port}"
    wait("lowcarb readiness", lambda: listening(f"{base}/readyz"), 120)

    prometheus = shutil.which("prometheus")
    if prometheus is None:
        raise SystemExit(
            "dashboard: prometheus is not installed (Debian: apt-get install prometheus)"
        )
    config = workdir / "prometheus.yml"
    config.write_text(
        f"global: {{scrape_interval: {SCRAPE_S}s, evaluation_interval: {SCRAPE_S}s}}\n"
        "scrape_configs:\n"
        f"  - job_name: lowcarb\n    static_configs: [{{targets: ['127.0.0.1:{port}']}}]\n"
    )
    prom_port = free_port()
    start_process(
        [
            prometheus,
            f"--config.file={config}",
            f"--storage.tsdb.path={workdir / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{prom_port}",
        ],
        workdir / "prometheus.log",
    )
    prom = f"http://127.0.0.1:{prom_port}"
    wait("Prometheus", lambda: listening(f"{prom}/-/ready"), 60)

    driver = Driver(store, base)
    start = prometheus_time()
    end = start + minutes * 60
    while (now := prometheus_time()) < end:
        driver.tick(now)
        time.sleep(max(0.0, 1.0 - (prometheus_time() - now)))
    time.sleep(2 * SCRAPE_S)  # the last scrape
    print(f"dashboard: {driver.count} pods, {driver.calls} extender calls", file=sys.stderr)
    for line in (workdir / "serve.log").read_text(errors="replace").splitlines():
        if '"error"' in line or "[error" in line:  # what the Errors panel counts, said once
            print(f"dashboard: serve: {line[:300]}", file=sys.stderr)
    return prom, start, prometheus_time()


STOP: list[Any] = []


def start_process(command: list[str], log: Path, env: dict[str, str] | None = None) -> None:
    out = log.open("wb")
    process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)

    def stop() -> None:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        out.close()

    STOP.append(stop)


# --- the queries --------------------------------------------------------------------------------


def grafana_expr(expr: str, seconds: float) -> str:
    values = {"__rate_interval": RATE_INTERVAL, "__range": f"{int(seconds)}s", "job": ".+"}
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: values[m.group(1) or m.group(2)], expr)


def legend(fmt: str | None, labels: dict[str, str], expr: str) -> str:
    if not fmt:
        return ",".join(f"{k}={v}" for k, v in labels.items()) or expr[:30]
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), fmt)


def query(prom: str, panel: dict[str, Any], start: float, end: float) -> list[dict[str, Any]]:
    """Every target's series: {legend, t, v} (range queries) or {legend, value} (instant)."""
    out = []
    for target in panel.get("targets", []):
        expr = grafana_expr(target["expr"], end - start)
        instant = target.get("instant", False) or panel["type"] == "stat"
        if instant:
            params: dict[str, Any] = {"query": expr, "time": end}
            answer = httpx.get(f"{prom}/api/v1/query", params=params, timeout=30).json()
        else:
            params = {"query": expr, "start": start, "end": end, "step": SCRAPE_S}
            answer = httpx.get(f"{prom}/api/v1/query_range", params=params, timeout=30).json()
        if answer["status"] != "success":
            raise SystemExit(f"dashboard: {panel['title']}: {answer.get('error')}: {expr}")
        for item in answer["data"]["result"]:
            name = legend(target.get("legendFormat"), item["metric"], expr)
            if instant:
                out.append(
                    {"legend": name, "value": float(item["value"][1]), "ref": target["refId"]}
                )
            else:
                pts = [(float(t), float(v)) for t, v in item["values"]]
                out.append({"legend": name, "t": [p[0] for p in pts], "v": [p[1] for p in pts]})
    return out


# --- drawing ------------------------------------------------------------------------------------

UNITS = {"s": "s", "short": "", "reqps": " req/s", "ops": " ops/s", "h": " h", "g/h": " g/h"}
AXIS_LABELS = {"s": "seconds", "reqps": "requests/s", "ops": "operations/s", "h": "hours"}


def unit_label(unit: str) -> str:
    """The y axis label of a Grafana unit: ``suffix:`` units name their own suffix."""
    if unit.startswith("suffix:"):
        return unit.removeprefix("suffix:").strip()
    return "" if unit in ("short", "none") else AXIS_LABELS.get(unit, unit)


def fmt_value(value: float, unit: str) -> str:
    if value != value:  # NaN: no data in the range (Grafana shows "No data")
        return "no data"
    if unit == "massg":  # Grafana's mass unit: grams, scaled up
        for scale, name in ((1e6, "t"), (1e3, "kg")):
            if abs(value) >= scale:
                return f"{value / scale:,.2f} {name}"
        return f"{value:,.1f} g"
    if unit == "percentunit":
        return f"{100 * value:.0f} %"
    if unit == "s" and value < 1:
        return f"{value * 1000:.1f} ms"
    return f"{value:,.2f}".rstrip("0").rstrip(".") + UNITS.get(unit, "")


def tick(value: float, _pos: object = None) -> str:
    """A plain axis number: no offset, no exponent, no trailing zeros."""
    if value == 0:
        return "0"
    digits = max(0, 2 - int(np.floor(np.log10(abs(value))))) if abs(value) < 100 else 0
    return f"{value:,.{digits}f}".rstrip("0").rstrip(".") if digits else f"{value:,.0f}"


def override(panel: dict[str, Any], name: str) -> dict[str, Any]:
    """The field overrides Grafana applies to the series named ``name`` (unit, decimals)."""
    out: dict[str, Any] = {}
    for item in panel.get("fieldConfig", {}).get("overrides", []):
        if item["matcher"] == {"id": "byName", "options": name}:
            out |= {p["id"]: p["value"] for p in item["properties"]}
    return out


def mapped(panel: dict[str, Any], value: float) -> str | None:
    """The text of a stat's value mapping (Grafana's ``mappings``), if one matches."""
    for mapping in panel.get("fieldConfig", {}).get("defaults", {}).get("mappings", []):
        if mapping.get("type") == "value" and value == value:
            hit = mapping["options"].get(f"{value:g}")
            if hit is not None:
                return str(hit["text"])
    return None


# Layout in pixels: Grafana's grid is 24 columns over the width and 30 px a row; a panel's plot
# leaves room inside its cell for its title above and its tick labels and x label below, so a
# row heading under a panel never meets that panel's labels.
WIDTH_PX, ROW_PX = 1800, 34
PAD_LEFT, PAD_RIGHT, PAD_TOP, PAD_BOTTOM = 64, 14, 26, 50


def draw(
    panels: list[dict[str, Any]],
    data: dict[int, list[dict[str, Any]]],
    out: Path,
    start: float,
    end: float,
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    rows = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in panels)
    height_px = rows * ROW_PX + 10
    fig = plt.figure(figsize=(WIDTH_PX / 100, height_px / 100), dpi=100, facecolor="#111217")
    colors = [plt.get_cmap("tab10")(i) for i in range(10)]

    def box(
        x_px: float, y_px: float, w_px: float, h_px: float
    ) -> tuple[float, float, float, float]:
        """Figure coordinates of a box given from the top left in pixels."""
        return (x_px / WIDTH_PX, 1 - (y_px + h_px) / height_px, w_px / WIDTH_PX, h_px / height_px)

    for panel in panels:
        g = panel["gridPos"]
        x_px, y_px = g["x"] / 24 * WIDTH_PX, g["y"] * ROW_PX
        w_px, h_px = g["w"] / 24 * WIDTH_PX, g["h"] * ROW_PX
        if panel["type"] == "row":
            left, bottom, _, height = box(x_px + 8, y_px, w_px, h_px)
            fig.text(
                left,
                bottom + height / 2,
                panel["title"],
                color="#d8d9da",
                fontsize=13,
                fontweight="bold",
                va="center",
            )
            continue
        unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit", "short")
        series = data[panel["id"]]
        if panel["type"] == "stat":
            ax = fig.add_axes(box(x_px + 8, y_px + PAD_TOP, w_px - 16, h_px - PAD_TOP - 8))
        else:
            ax = fig.add_axes(
                box(
                    x_px + PAD_LEFT,
                    y_px + PAD_TOP,
                    w_px - PAD_LEFT - PAD_RIGHT,
                    h_px - PAD_TOP - PAD_BOTTOM,
                )
            )
        ax.set_facecolor("#181b1f")
        for spine in ax.spines.values():
            spine.set_color("#2c3235")
        ax.set_title(panel["title"], color="#d8d9da", fontsize=10, loc="left")
        ax.tick_params(colors="#9fa7b3", labelsize=7)
        if panel["type"] == "stat":
            ax.set_xticks([])
            ax.set_yticks([])
            for i, item in enumerate(series or [{"legend": "", "value": float("nan")}]):
                y = 1 - (i + 0.5) / max(len(series), 1)
                own = override(panel, item["legend"])
                value = item["value"]
                if "decimals" in own and value == value:
                    value = round(value, own["decimals"])
                text = mapped(panel, value) or fmt_value(value, own.get("unit", unit))
                ax.text(
                    0.5,
                    y + 0.08,
                    text,
                    color="#73bf69",
                    fontsize=20,
                    ha="center",
                    va="center",
                    transform=ax.transAxes,
                )
                ax.text(
                    0.5,
                    y - 0.1,
                    item["legend"],
                    color="#9fa7b3",
                    fontsize=8,
                    ha="center",
                    va="center",
                    transform=ax.transAxes,
                )
            continue
        if not series:
            ax.text(0.5, 0.5, "No data", color="#9fa7b3", ha="center", transform=ax.transAxes)
            ax.set_xticks([])
            ax.set_yticks([])
        values = [v for item in series for v in item["v"] if v == v]
        for i, item in enumerate(series):
            minutes = [(t - start) / 60 for t in item["t"]]
            style = "--" if item["legend"].endswith(" total") else "-"
            ax.plot(minutes, item["v"], style, color=colors[i % 10], lw=1.2, label=item["legend"])
        ax.grid(color="#2c3235", lw=0.5)
        if series:
            ax.set_xlim(0, (end - start) / 60)  # the whole run, as Grafana's time range
            ax.set_xlabel("minutes into the run", color="#9fa7b3", fontsize=7)
            ax.yaxis.set_major_formatter(FuncFormatter(tick))
            if values and min(values) >= 0:  # Grafana's soft minimum: counts start at 0
                ax.set_ylim(bottom=0, top=max(max(values) * 1.15, 1e-9 if max(values) else 1))
            if label := unit_label(unit):
                ax.set_ylabel(label, color="#9fa7b3", fontsize=7)
            ax.legend(
                fontsize=6,
                loc="upper left",
                ncol=3 if len(series) > 4 else 1,
                facecolor="#181b1f",
                labelcolor="#d8d9da",
                edgecolor="#2c3235",
            )
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, facecolor=fig.get_facecolor())


def instant(prom: str, expr: str, at: float) -> dict[str, float]:
    """An instant query's answer: its one label's value (or "") -> value."""
    answer = httpx.get(f"{prom}/api/v1/query", params={"query": expr, "time": at}, timeout=30)
    out = {}
    for item in answer.json()["data"]["result"]:
        key = next(iter(item["metric"].values()), "")
        out[key] = round(float(item["value"][1]), 3)
    return out


def measured(prom: str, start: float, end: float) -> dict[str, Any]:
    """The run's figures for the README caption, from the same Prometheus."""
    span = f"{int(end - start)}s"

    def grams(basis: str) -> str:
        return f'sum(increase(lowcarb_accounted_emissions_grams_total{{basis="{basis}"}}[{span}]))'

    return {
        "held_max": instant(prom, f"max_over_time(lowcarb_gate_pods_held[{span}])", end),
        "releases": instant(
            prom, f"sum by (reason) (increase(lowcarb_gate_releases_total[{span}]))", end
        ),
        "planned_delay_h_max": instant(
            prom, f"max_over_time(lowcarb_gate_planned_delay_hours[{span}])", end
        ),
        "pods_bound": instant(prom, f"sum(increase(lowcarb_pods_bound_total[{span}]))", end),
        "avoided_g": instant(prom, f"{grams('counterfactual')} - {grams('location')}", end),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=6.0, help="How long to drive lowcarb")
    parser.add_argument(
        "--after",
        default=f"{YEAR}-06-01T00:00:00+00:00",
        help="Straddle the first hour after this instant whose cleanest zone is DROP cleaner",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "dashboard.png")
    args = parser.parse_args()
    dashboard = json.loads(DASHBOARD.read_text())
    panels = dashboard["panels"]
    boundary = cleaner_hour(args.after)
    at = boundary - args.minutes * 60 / 2  # half the run before the cleaner hour, half after
    with tempfile.TemporaryDirectory(prefix="lowcarb-dashboard-") as tmp:
        try:
            prom, start, end = run(args.minutes, Path(tmp), at)
            data = {p["id"]: query(prom, p, start, end) for p in panels if p["type"] != "row"}
            figures = measured(prom, start, end)
        finally:
            for stop in reversed(STOP):
                stop()
    draw(panels, data, args.out, start, end)
    counts = {p["title"]: len(data[p["id"]]) for p in panels if p["type"] != "row"}
    clock = datetime.fromtimestamp(at, UTC).isoformat()
    cleaner = datetime.fromtimestamp(boundary, UTC).isoformat()
    print(
        json.dumps(
            {
                "benchmark": "dashboard",
                "out": str(args.out),
                "minutes": args.minutes,
                "lowcarb_now": clock,
                "cleaner_hour": cleaner,
                "measured": figures,
                "series": counts,
            }
        )
    )


if __name__ == "__main__":
    main()
