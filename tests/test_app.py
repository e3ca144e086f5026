"""The composition root: compose() builds every command's pieces from its options, a policy
reload reconfigures them, and stop() releases them."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest
from structlog.testing import capture_logs

from carbon.accounting.ledger import LedgerError, LifecycleRecord
from carbon.config import CarbonConfig
from scheduler import wire
from scheduler.app import compose
from scheduler.policy.validate import PolicyError

POLICY = """\
apiVersion: lowcarb.dev/v2
kind: Policy
carbon:
  static: {{{zone}: {g}}}
  zones: {{dc-1: {zone}}}
classes:
  batch:
    selector: {{namespaces: [batch]}}
    prices: {{carbonPerTonne: 500}}
"""


def node(name: str, region: str) -> wire.Node:
    return msgspec.convert(
        {
            "metadata": {
                "name": name,
                "resourceVersion": "1",
                "labels": {"topology.kubernetes.io/region": region},
            },
            "status": {"allocatable": {"cpu": "8", "memory": "32Gi"}},
        },
        wire.Node,
    )


async def test_the_pieces_follow_the_policy_and_its_reload(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY.format(zone="SE-SE3", g=20))
    ledger = tmp_path / "ledger.sqlite"
    parts = compose(path, ledger=ledger, zones=["SE-SE3"])
    assert parts.policy.class_prices("batch").carbonPerTonne == 500.0
    assert parts.store.engine().policy is parts.policy
    assert parts.mapper.zone_for_region("dc-1") == "SE-SE3"
    parts.state.upsert_node(node("n1", "dc-1"))
    assert parts.state.full_table().zone_names() == ["SE-SE3"]
    reading = parts.cache.view().reading("SE-SE3")
    assert reading is not None and reading.g_per_kwh == 20.0
    assert parts.cache.zones == {"SE-SE3"}
    assert parts.ledger is not None and ledger.exists()
    assert parts.sync is None and parts.client is None  # no cluster until connect()

    path.write_text(POLICY.format(zone="FR", g=55))
    assert parts.store.reload()
    assert parts.mapper.zone_for_region("dc-1") == "FR"
    assert parts.state.full_table().zone_names() == ["FR"]  # the nodes are mapped again
    reading = parts.cache.view().reading("FR")
    assert reading is not None and reading.g_per_kwh == 55.0

    await parts.stop()
    with pytest.raises(LedgerError, match="closed"):
        parts.ledger.ledger.append(LifecycleRecord(uid="u", event="start", at=0.0))


async def test_the_carbon_adjustment_applies_at_start_and_on_reload(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY.format(zone="SE-SE3", g=20))

    def staler(config: CarbonConfig) -> CarbonConfig:
        return config.model_copy(update={"static": {**config.static, "PL": 700.0}})

    parts = compose(path, carbon=staler)
    assert parts.cache.config.static == {"SE-SE3": 20.0, "PL": 700.0}
    path.write_text(POLICY.format(zone="FR", g=55))
    assert parts.store.reload()
    assert parts.cache.config.static == {"FR": 55.0, "PL": 700.0}
    assert parts.policy.carbon.static == {"FR": 55.0}  # the policy itself is left as written
    await parts.stop()


def test_a_bad_policy_is_every_issue_and_builds_nothing(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text("classes: {a: {gpuMode: x, prices: {carbonPerTone: 1}}}\n")
    ledger = tmp_path / "ledger.sqlite"
    with pytest.raises(PolicyError) as caught:
        compose(path, ledger=ledger)
    assert [i.path for i in caught.value.issues] == ["classes.a.gpuMode", "classes.a.prices"]
    assert not ledger.exists()  # the policy is read first: nothing was opened


@pytest.mark.parametrize("warn", [True, False])
def test_policy_warnings_are_logged_only_when_asked(tmp_path: Path, warn: bool) -> None:
    """Serving logs what policy validate warns about; one-shot commands keep their output clean
    (explain --json, carbon show --json, gates plan --json print to stdout)."""
    path = tmp_path / "policy.yaml"
    path.write_text("classes: {lonely: {gpuMode: fgd}}\n")  # no selector: a warning
    with capture_logs() as logs:
        compose(path, policy_warnings=warn)
    warned = [e for e in logs if e["event"] == "policy warnings"]
    assert len(warned) == (1 if warn else 0)
    if warn:
        assert "class 'lonely' has no selector" in warned[0]["warnings"][0]
