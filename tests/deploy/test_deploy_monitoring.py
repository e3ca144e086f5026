"""deploy/monitoring: every dashboard and alert query names metrics (and labels) that a real
`lowcarb serve` exports, the PrometheusRule and dashboard are well formed, the alerts fire when
they should (promtool), and a real Prometheus scraping lowcarb answers every panel's query."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import typing
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from carbon.accounting.ledger import Ledger, LifecycleRecord, PlacementRecord
from carbon.clock import wall
from scheduler.gates.request import ReleaseReason
from tests.support.deploy import (
    DEPLOY,
    Manifest,
    build,
    find,
    load_yaml_documents,
    running_lowcarb,
    validate_object,
)
from tests.support.fakeapi import (
    FakeApiServer,
    PodStore,
    Reply,
    WatchReply,
    fixture,
    free_port,
    write_kubeconfig,
)

MONITORING = DEPLOY / "monitoring"
DASHBOARD = MONITORING / "dashboard.json"
RULES = MONITORING / "prometheusrule.yaml"
UNIT_TESTS = Path(__file__).with_name("prometheusrule_unittest.yaml")
SCHEDULER_FIXTURES = Path(__file__).parents[1] / "fixtures" / "kube-scheduler"

# Labels Prometheus (and prometheus-operator's ServiceMonitor) attach to every scraped series.
TARGET_LABELS = {"job", "instance", "namespace", "pod", "service", "endpoint", "container"}
# What Grafana substitutes before sending a query (typical values).
GRAFANA_VARIABLES = {"__rate_interval": "1m", "__interval": "30s", "__range": "6h", "job": ".+"}
SEVERITIES = {"critical", "warning", "info"}


# --- a PromQL reader: metric selectors, label matchers, grouping labels -------------------------

AGGREGATIONS = {
    "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
    "bottomk", "topk", "quantile", "limitk", "limit_ratio",
}  # fmt: skip
FUNCTIONS = {
    "abs", "absent", "absent_over_time", "ceil", "changes", "clamp", "clamp_max", "clamp_min",
    "day_of_month", "day_of_week", "day_of_year", "days_in_month", "delta", "deriv", "exp",
    "floor", "histogram_avg", "histogram_count", "histogram_fraction", "histogram_quantile",
    "histogram_stddev", "histogram_stdvar", "histogram_sum", "holt_winters", "hour", "idelta",
    "increase", "irate", "label_join", "label_replace", "ln", "log2", "log10", "minute", "month",
    "predict_linear", "rate", "resets", "round", "scalar", "sgn", "sort", "sort_desc", "sqrt",
    "time", "timestamp", "vector", "year", "avg_over_time", "min_over_time", "max_over_time",
    "sum_over_time", "count_over_time", "quantile_over_time", "stddev_over_time",
    "stdvar_over_time", "last_over_time", "present_over_time", "acos", "acosh", "asin", "asinh",
    "atan", "atanh", "cos", "cosh", "sin", "sinh", "tan", "tanh", "deg", "rad", "pi",
}  # fmt: skip
LABEL_LISTS = {"by", "without", "on", "ignoring", "group_left", "group_right"}
KEYWORDS = {"bool", "offset", "and", "or", "unless", "atan2", "inf", "nan"}

TOKEN = re.compile(
    r"""(?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
      |(?P<range>\[[^\]]*\])
      |(?P<number>\d+(?:\.\d+)?(?:[eE][+-]?\d+)?(?:ms|[smhdwy])*)
      |(?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)
      |(?P<punct>==|!=|=~|!~|>=|<=|[-+*/%^=<>,@(){}])
      |(?P<space>\s+)""",
    re.VERBOSE,
)


@dataclass(frozen=True)
class Matcher:
    label: str
    op: str
    value: str


@dataclass
class Query:
    """What a PromQL expression refers to."""

    selectors: list[tuple[str, list[Matcher]]] = field(default_factory=list)
    grouping: set[str] = field(default_factory=set)

    @property
    def metrics(self) -> set[str]:
        return {name for name, _ in self.selectors}


def tokens(expr: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    position = 0
    while position < len(expr):
        match = TOKEN.match(expr, position)
        if match is None:
            raise ValueError(f"cannot read {expr[position : position + 20]!r} in {expr!r}")
        kind = match.lastgroup or ""
        if kind != "space":
            out.append((kind, match.group()))
        position = match.end()
    return out


def parse_promql(expr: str) -> Query:
    """Metric selectors (name and label matchers) and grouping labels of a PromQL expression.

    Raises ValueError for an unknown function, a selector without a metric name, or
    unbalanced brackets, so that a typo cannot pass as "no metric used".
    """
    items = tokens(expr)
    query = Query()
    depth = 0
    index = 0
    while index < len(items):
        kind, text = items[index]
        following = items[index + 1][1] if index + 1 < len(items) else ""
        if kind == "punct" and text == "(":
            depth += 1
        elif kind == "punct" and text == ")":
            depth -= 1
            if depth < 0:
                raise ValueError(f"unbalanced ')' in {expr!r}")
        elif kind == "punct" and text == "{":
            raise ValueError(f"a selector without a metric name in {expr!r}")
        elif kind == "ident" and text in LABEL_LISTS:
            if following != "(":
                index += 1
                continue
            end = next(i for i in range(index + 2, len(items)) if items[i][1] == ")")
            query.grouping |= {t for k, t in items[index + 2 : end] if k == "ident"}
            index = end
        elif kind == "ident" and text in AGGREGATIONS:
            pass
        elif kind == "ident" and following == "(":
            if text not in FUNCTIONS:
                raise ValueError(f"unknown function {text!r} in {expr!r}")
        elif kind == "ident" and text.lower() not in KEYWORDS:
            matchers: list[Matcher] = []
            if following == "{":
                end = next(i for i in range(index + 2, len(items)) if items[i][1] == "}")
                inner = items[index + 2 : end]
                for start in range(0, len(inner), 4):
                    label, op, value = inner[start : start + 3]
                    if label[0] != "ident" or value[0] != "string":
                        raise ValueError(f"cannot read the matchers of {text} in {expr!r}")
                    matchers.append(Matcher(label[1], op[1], value[1][1:-1]))
                index = end
            query.selectors.append((text, matchers))
        index += 1
    if depth != 0:
        raise ValueError(f"unbalanced '(' in {expr!r}")
    return query


def substitute(expr: str) -> str:
    """The query Grafana sends: its variables replaced by typical values."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name not in GRAFANA_VARIABLES:
            raise ValueError(f"unknown dashboard variable ${name} in {expr!r}")
        return GRAFANA_VARIABLES[name]

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", value, expr)


# --- the queries shipped ------------------------------------------------------------------------


def load_dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return data


def load_rule() -> Manifest:
    (rule,) = load_yaml_documents(RULES)
    return rule


def all_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from all_panels(panel.get("panels", []))


def dashboard_queries() -> list[tuple[str, str]]:
    """(id, PromQL as Grafana sends it) for every panel target and query variable."""
    dashboard = load_dashboard()
    out = []
    for panel in all_panels(dashboard["panels"]):
        for target in panel.get("targets", []):
            out.append((f"panel {panel['title']!r} {target['refId']}", substitute(target["expr"])))
    for variable in dashboard["templating"]["list"]:
        if variable["type"] != "query":
            continue
        match = re.fullmatch(r"label_values\((\w+),\s*(\w+)\)", variable["definition"])
        assert match, f"variable {variable['name']}: only label_values(metric, label) is read"
        out.append((f"variable {variable['name']}", match.group(1)))
    return out


def rule_queries() -> list[tuple[str, str]]:
    return [
        (f"alert {rule['alert']}", rule["expr"])
        for group in load_rule()["spec"]["groups"]
        for rule in group["rules"]
    ]


QUERIES = dashboard_queries() + rule_queries()
PANELS = [q for q in QUERIES if q[0].startswith("panel")]


# --- what the real server exports ---------------------------------------------------------------


@dataclass
class Exported:
    """Series names of a real /metrics scrape, with the label names and values seen."""

    text: str
    names: set[str] = field(default_factory=set)
    labels: dict[str, set[str]] = field(default_factory=dict)
    values: dict[tuple[str, str], set[str]] = field(default_factory=dict)
    port: int = 0

    @classmethod
    def parse(cls, text: str, port: int) -> Exported:
        out = cls(text, port=port)
        for family in text_string_to_metric_families(text):
            base = family.name
            derived = {base}
            if family.type == "counter":
                base = base.removesuffix("_total")
                derived = {f"{base}_total", f"{base}_created"}
            elif family.type == "histogram":
                derived = {f"{base}{s}" for s in ("_bucket", "_sum", "_count", "_created")}
            elif family.type == "summary":
                derived = {base, *(f"{base}{s}" for s in ("_sum", "_count", "_created"))}
            out.names |= derived
            for sample in family.samples:
                out.names.add(sample.name)
                out.labels.setdefault(sample.name, set()).update(sample.labels)
                for label, value in sample.labels.items():
                    out.values.setdefault((sample.name, label), set()).add(value)
        return out


POLICY = """\
carbon:
  providers:
    - name: ukgrid
      url: http://127.0.0.1:{dead_port}/
      refresh: 1s
      timeout: 1s
  fallback: [ukgrid, static]
  zones: {{us-east: US-MIDA-PJM, us-west: US-CAL-CISO, eu-central: GB}}
  backoff: {{initial: 1s, max: 2s}}
  circuit: {{failures: 1, openFor: 1s}}
"""


def wait_for(what: str, check: typing.Callable[[], bool], seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.2)


def finished_pod(path: Path) -> None:
    """A ledger holding one pod that lowcarb placed and that ran for an hour, ending two hours
    ago: settled, not yet accounted. Its placement beat the carbon-unaware mean (300 vs 200 g)."""
    end = wall() - 7200
    ledger = Ledger(path)
    try:
        for record in (
            PlacementRecord(
                uid="uid-finished",
                namespace="e2e",
                name="finished",
                at=end - 3600,
                node="euc1-a-gpu",
                zone="GB",
                region="eu-central",
                gpu_model="NVIDIA-A100-PCIE-40GB",
                gpus=1,
                cpu_milli=4000,
                memory_bytes=16 * 2**30,
                intensity_g_per_kwh=200.0,
                counterfactual_g_per_kwh=300.0,
            ),
            LifecycleRecord(uid="uid-finished", event="start", at=end - 3600),
            LifecycleRecord(uid="uid-finished", event="end", at=end),
        ):
            assert ledger.append(record).result(timeout=10)
    finally:
        ledger.close()


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Exported]:
    """Start the real server in cluster mode against the fake API server and drive it through
    every path that creates metric labels; yield its /metrics, still serving."""
    tmp = tmp_path_factory.mktemp("monitoring")
    api = FakeApiServer().start()
    try:
        store = PodStore(api).install()
        # a gated pod with an unreadable deadline: the gate controller releases it at once
        store.add_pod("bad-deadline", annotations={"lowcarb.dev/deadline": "soon"})
        store.fail_next.append(503)  # its first release patch fails once (a gate API error)
        api.add("GET", "/api/v1/nodes", Reply(200, fixture("nodes-list.json")), watch=False)
        api.add("GET", "/api/v1/nodes", WatchReply([]), watch=True)
        pod = "/api/v1/namespaces/e2e/pods/train-h100"  # the pod of the bind fixture
        api.add("POST", f"{pod}/binding", Reply(201, fixture("binding-create.json")))
        api.add("PATCH", pod, Reply(200, fixture("annotations-merge-patch.json")))
        kubeconfig = write_kubeconfig(tmp / "kubeconfig", api.url)
        ledger = tmp / "ledger.sqlite"
        finished_pod(ledger)  # the accountant's first pass accounts it: the emissions counters
        policy = tmp / "policy.yaml"
        # a provider on a closed loopback port: errors, open circuit, fallback to static
        policy.write_text(POLICY.format(dead_port=free_port()))
        args = ["--kubeconfig", str(kubeconfig), "--policy", str(policy)]
        args += ["--ledger", str(ledger)]
        with running_lowcarb(args, tmp / "serve.log") as port, httpx.Client(timeout=30) as http:
            base = f"http://127.0.0.1:{port}"
            wait_for("readiness", lambda: http.get(f"{base}/readyz").status_code == 200, 120)
            for version in sorted(p for p in SCHEDULER_FIXTURES.iterdir() if p.is_dir()):
                for verb in ("filter", "prioritize", "bind", "preempt"):
                    body = (version / f"{verb}.args.nodeCacheCapable-false.json").read_bytes()
                    assert http.post(f"{base}/{verb}", content=body).status_code == 200, verb
            assert http.post(f"{base}/filter", content=b"not json").status_code == 400

            def scrape() -> str:
                return http.get(f"{base}/metrics").text

            def sampled(prefix: str) -> bool:
                return any(line.startswith(prefix) for line in scrape().splitlines())

            def counted(prefix: str) -> bool:  # a sample above 0 (some series start at 0)
                lines = scrape().splitlines()
                return any(ln.startswith(prefix) and float(ln.split()[-1]) > 0 for ln in lines)

            wait_for("a gate release", lambda: counted("lowcarb_gate_releases_total{"))
            wait_for("an accounted pod", lambda: sampled("lowcarb_accounted_pods_total{"))
            wait_for("a fallback", lambda: sampled("lowcarb_carbon_fallbacks_total{"))
            wait_for(
                "an open circuit",
                lambda: sampled('lowcarb_carbon_circuit_open{provider="ukgrid"} 1'),
            )
            policy.write_text("carbon: {staleAfter: -1}\n")  # invalid: rejected, last good kept
            wait_for("the policy reload", lambda: sampled("lowcarb_policy_reload_failed 1"))
            yield Exported.parse(scrape(), port)
    finally:
        api.stop()


# --- the PromQL reader itself -------------------------------------------------------------------


def test_reader_finds_metrics_labels_and_grouping() -> None:
    query = parse_promql(
        'sum by (job, kind) (rate(a_total{kind!="x", job=~"j.+"}[5m])) / on (job) group_left '
        "sum without (le) (rate(b_bucket[5m] offset 1h)) > bool 0.05 "
        'or histogram_quantile(0.9, c) unless max(d{e="f"}) and inf'
    )
    assert [name for name, _ in query.selectors] == ["a_total", "b_bucket", "c", "d"]
    assert query.selectors[0][1] == [Matcher("kind", "!=", "x"), Matcher("job", "=~", "j.+")]
    assert query.grouping == {"job", "kind", "le"}
    with pytest.raises(ValueError, match="unknown function 'rat'"):
        parse_promql("rat(a_total[5m])")
    with pytest.raises(ValueError, match="without a metric name"):
        parse_promql('{__name__="a"}')
    with pytest.raises(ValueError, match="unbalanced"):
        parse_promql("sum(rate(a[5m])")
    with pytest.raises(ValueError, match="unknown dashboard variable"):
        substitute("rate(a[$__rate_interval]) * $undefined")


# --- every query against the real server --------------------------------------------------------


@pytest.mark.parametrize(("where", "expr"), QUERIES, ids=[q[0] for q in QUERIES])
def test_query_names_only_exported_metrics(where: str, expr: str, exported: Exported) -> None:
    query = parse_promql(expr)
    assert query.metrics, f"{where}: no metric in {expr!r}"
    for name in sorted(query.metrics):
        near = sorted(n for n in exported.names if n.split("_")[:3] == name.split("_")[:3])
        assert name in exported.names, f"{where}: {name} is not exported (similar: {near})"


@pytest.mark.parametrize(("where", "expr"), QUERIES, ids=[q[0] for q in QUERIES])
def test_query_uses_only_labels_the_metrics_carry(
    where: str, expr: str, exported: Exported
) -> None:
    query = parse_promql(expr)
    carried: set[str] = set(TARGET_LABELS)
    for name, matchers in query.selectors:
        own = exported.labels.get(name)
        assert own is not None, f"{where}: the scrape has no sample of {name}"
        carried |= own
        for matcher in matchers:
            assert matcher.label in own | TARGET_LABELS, f"{where}: {name} has no {matcher.label}"
            if matcher.op not in {"=", "!="} or matcher.label in TARGET_LABELS:
                continue
            seen = exported.values.get((name, matcher.label), set())
            if name == "lowcarb_gate_releases_total" and matcher.label == "reason":
                seen |= set(typing.get_args(ReleaseReason))
            assert matcher.value in seen, (
                f"{where}: {name}{{{matcher.label}={matcher.value!r}}} never seen: {sorted(seen)}"
            )
    unknown = query.grouping - carried
    assert not unknown, f"{where}: groups by {sorted(unknown)}, which no metric in it carries"


def test_scrape_covered_every_lowcarb_family(exported: Exported) -> None:
    """The label checks above are only as good as the scrape: every lowcarb metric has a sample."""
    families = list(text_string_to_metric_families(exported.text))
    empty = sorted(f.name for f in families if f.name.startswith("lowcarb_") and not f.samples)
    assert not empty, f"never driven, so their labels go unchecked: {empty}"


def test_gpus_by_zone_are_the_nodes_of_the_api_server(exported: Exported) -> None:
    """lowcarb_gpus_total is the fixture's nodes summed per policy zone and model; free <= total."""
    zones = {"us-east": "US-MIDA-PJM", "us-west": "US-CAL-CISO", "eu-central": "GB"}
    expected: dict[tuple[str, str], float] = {}
    for node in json.loads(fixture("nodes-list.json"))["items"]:
        labels = node["metadata"]["labels"]
        count = int(node["status"]["allocatable"].get("nvidia.com/gpu", 0))
        if count:
            key = (zones[labels["topology.kubernetes.io/region"]], labels["nvidia.com/gpu.product"])
            expected[key] = expected.get(key, 0) + count
    samples = {
        (s.name, s.labels["zone"], s.labels["model"]): s.value
        for family in text_string_to_metric_families(exported.text)
        if family.name in {"lowcarb_gpus_total", "lowcarb_gpus_free"}
        for s in family.samples
    }
    assert {(z, m): v for (n, z, m), v in samples.items() if n == "lowcarb_gpus_total"} == expected
    for (name, zone, model), value in samples.items():
        if name == "lowcarb_gpus_free":
            assert 0 <= value <= expected[zone, model]


# --- PrometheusRule -----------------------------------------------------------------------------

REQUIRED_ALERTS = {
    # issue 16: carbon data stale, provider circuit open, policy reload failing, extender
    # errors, gate releases by fail-open -- each alert, and the metric it must watch
    "LowcarbCarbonDataStale": "lowcarb_carbon_data_age_seconds",
    "LowcarbCarbonCircuitOpen": "lowcarb_carbon_circuit_open",
    "LowcarbPolicyReloadFailing": "lowcarb_policy_reload_failed",
    "LowcarbExtenderErrors": "lowcarb_errors_total",
    "LowcarbGateFailOpen": "lowcarb_gate_releases_total",
}


def test_prometheus_rule_is_well_formed() -> None:
    rule = load_rule()
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["kind"] == "PrometheusRule"
    assert rule["metadata"]["name"] and rule["metadata"]["namespace"]
    assert set(rule) == {"apiVersion", "kind", "metadata", "spec"}
    groups = rule["spec"]["groups"]
    assert len({g["name"] for g in groups}) == len(groups) > 0
    alerts: dict[str, Manifest] = {}
    for group in groups:
        assert set(group) <= {"name", "interval", "rules"}, group["name"]
        for item in group["rules"]:
            name = item["alert"]
            assert set(item) <= {"alert", "expr", "for", "labels", "annotations"}, name
            assert re.fullmatch(r"Lowcarb[A-Z][A-Za-z]+", name), name
            assert name not in alerts, f"{name} defined twice"
            alerts[name] = item
            if "for" in item:
                assert re.fullmatch(r"\d+[smh]", item["for"]), (name, item["for"])
            assert item["labels"]["severity"] in SEVERITIES, name
            notes = item["annotations"]
            assert {"summary", "description", "runbook"} <= set(notes), name
            assert all(len(notes[k].strip()) > 20 for k in ("description", "runbook")), name
            # Templates may only use labels the expression keeps.
            used = set(re.findall(r"\$labels\.(\w+)", " ".join(notes.values())))
            kept = parse_promql(item["expr"]).grouping
            assert used <= kept, f"{name}: annotations use {sorted(used - kept)}, dropped by expr"
    for name, metric in REQUIRED_ALERTS.items():
        assert name in alerts, f"missing alert {name}"
        assert metric in parse_promql(alerts[name]["expr"]).metrics, name
    fail_open = parse_promql(alerts["LowcarbGateFailOpen"]["expr"])
    assert {m.value for _, ms in fail_open.selectors for m in ms} == {"no-forecast"}


def missing(what: str) -> None:
    """Skip without Debian's prometheus package (.ci/run installs it where the machine can reach
    Debian's mirrors; the queries are still checked against the real server's metrics above)."""
    pytest.skip(f"{what} is not installed (Debian: apt-get install prometheus)")


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        missing("promtool")
    assert found is not None
    return found


def rule_groups(tmp_path: Path, *, annotations: bool) -> Path:
    groups = load_rule()["spec"]["groups"]
    if not annotations:
        groups = [
            {**g, "rules": [{k: v for k, v in r.items() if k != "annotations"} for r in g["rules"]]}
            for g in groups
        ]
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": groups}))
    return path


def test_rules_pass_promtool_check(tmp_path: Path) -> None:
    """Prometheus's own parser: expressions, durations and annotation templates."""
    tool = promtool()
    rules = rule_groups(tmp_path, annotations=True)
    result = subprocess.run(
        [tool, "check", "rules", str(rules)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_alerts_fire_when_they_should(tmp_path: Path) -> None:
    """promtool unit tests: thresholds, `for` delays, and first increments of new series."""
    tool = promtool()
    rule_groups(tmp_path, annotations=False)
    tests = tmp_path / UNIT_TESTS.name
    shutil.copyfile(UNIT_TESTS, tests)
    result = subprocess.run(
        [tool, "test", "rules", str(tests)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    tested = set(re.findall(r"alertname: (\w+)", UNIT_TESTS.read_text()))
    assert tested == {where.removeprefix("alert ") for where, _ in rule_queries()}


# --- Grafana dashboard --------------------------------------------------------------------------


def rectangles_overlap(a: dict[str, int], b: dict[str, int]) -> bool:
    return (
        a["x"] < b["x"] + b["w"]
        and b["x"] < a["x"] + a["w"]
        and a["y"] < b["y"] + b["h"]
        and b["y"] < a["y"] + a["h"]
    )


def test_dashboard_is_a_grafana_dashboard_with_a_templated_datasource() -> None:
    dashboard = load_dashboard()
    assert dashboard["uid"] and dashboard["title"]
    assert dashboard["schemaVersion"] >= 36
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    templated = {"type": "prometheus", "uid": "${datasource}"}
    panels = list(all_panels(dashboard["panels"]))
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    placed: list[dict[str, Any]] = []
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        for other in placed:
            assert not rectangles_overlap(grid, other["gridPos"]), (panel["title"], other["title"])
        placed.append(panel)
        if panel["type"] == "row":
            continue
        assert panel["type"] in {
            "timeseries",
            "stat",
            "gauge",
            "bargauge",
            "table",
            "state-timeline",
        }
        assert panel["datasource"] == templated, panel["title"]
        assert panel.get("description"), panel["title"]
        targets = panel["targets"]
        assert targets, f"{panel['title']} has no query"
        assert len({t["refId"] for t in targets}) == len(targets), panel["title"]
        for target in targets:
            assert target["datasource"] == templated, panel["title"]
            assert target["expr"].strip(), panel["title"]
    for variable in variables.values():
        if variable["type"] == "query":
            assert variable["datasource"] == templated, variable["name"]
    # No data source is named anywhere: the dashboard works with any Prometheus.
    uids = re.findall(r'"uid":\s*"([^"]*)"', DASHBOARD.read_text())
    assert set(uids) <= {dashboard["uid"], "${datasource}", "-- Grafana --"}, uids


COVERAGE = {
    # issue 16's panels -> (a metric the panel must query, a label it must break down by)
    "decisions per verb": ("lowcarb_request_duration_seconds_count", "verb"),
    "latency per verb": ("lowcarb_request_duration_seconds_bucket", "verb"),
    "carbon intensity per zone": ("lowcarb_carbon_intensity_g_per_kwh", "zone"),
    "data age per zone": ("lowcarb_carbon_data_age_seconds", "zone"),
    "fallbacks": ("lowcarb_carbon_fallbacks_total", "zone"),
    "gated pods": ("lowcarb_gate_pods_held", None),
    "gate releases": ("lowcarb_gate_releases_total", "reason"),
    "emissions avoided": ("lowcarb_accounted_emissions_grams_total", None),
    "GPU free by zone": ("lowcarb_gpus_free", "zone"),
}


@pytest.mark.parametrize("topic", COVERAGE)
def test_dashboard_has_a_panel_for(topic: str) -> None:
    metric, label = COVERAGE[topic]
    parsed = [parse_promql(expr) for _, expr in PANELS]
    assert any(metric in q.metrics and (label is None or label in q.grouping) for q in parsed), (
        f"no panel queries {metric}" + (f" by {label}" if label else "")
    )


def test_monitoring_kustomization_builds() -> None:
    objects = build(MONITORING)
    configmap = find(objects, "ConfigMap", "lowcarb-dashboard")
    validate_object(configmap)
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    (content,) = configmap["data"].values()
    assert json.loads(content) == load_dashboard()
    assert len(content.encode()) < 900_000, "ConfigMaps hold at most 1 MiB"
    rendered = find(objects, "PrometheusRule", "lowcarb")
    assert rendered["spec"] == load_rule()["spec"]
    assert len(objects) == 2


# --- a real Prometheus scraping the real server --------------------------------------------------


@pytest.fixture(scope="module")
def prometheus(exported: Exported, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    binary = shutil.which("prometheus")
    if binary is None:
        missing("prometheus")
    assert binary is not None
    tmp = tmp_path_factory.mktemp("prometheus")
    config = tmp / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        f"  - job_name: lowcarb\n    static_configs: [{{targets: ['127.0.0.1:{exported.port}']}}]\n"
    )
    port = free_port()
    command = [
        binary,
        f"--config.file={config}",
        f"--storage.tsdb.path={tmp / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    url = f"http://127.0.0.1:{port}"
    with (tmp / "prometheus.log").open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        try:
            with httpx.Client(timeout=10) as http:

                def scraped() -> bool:
                    try:
                        answer = http.get(
                            f"{url}/api/v1/query",
                            params={"query": 'count_over_time(up{job="lowcarb"}[1m]) >= 5'},
                        ).json()
                    except (httpx.TransportError, ValueError):  # not listening, or starting up
                        return False
                    return bool(answer.get("data", {}).get("result"))

                wait_for("five scrapes by Prometheus", scraped, 90)
            yield url
        finally:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.mark.slow
def test_prometheus_answers_every_panel_with_data(prometheus: str) -> None:
    """The dashboard as Grafana would send it, with short windows for a 1 s scrape interval."""
    empty, failed = [], []
    with httpx.Client(timeout=10) as http:
        for where, expr in PANELS:
            short = expr.replace("[1m]", "[5s]").replace("[6h]", "[1m]")
            answer = http.get(f"{prometheus}/api/v1/query", params={"query": short}).json()
            if answer["status"] != "success":
                failed.append(f"{where}: {answer.get('error')}")
            elif not answer["data"]["result"]:
                empty.append(where)
    assert not failed, failed
    assert not empty, f"no data from the real server for: {empty}"


@pytest.mark.slow
def test_prometheus_evaluates_every_alert_expression(prometheus: str) -> None:
    with httpx.Client(timeout=10) as http:
        for where, expr in rule_queries():
            answer = http.get(f"{prometheus}/api/v1/query", params={"query": expr}).json()
            assert answer["status"] == "success", f"{where}: {answer.get('error')}"
