"""CarbonConfig: the offline default, durations, and errors that name the field and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from carbon.config import CarbonConfig, load_carbon_section
from carbon.duration import parse_duration
from carbon.providers.static import StaticOptions

POLICY = Path(__file__).resolve().parents[2] / "policies" / "default.yaml"


def test_no_arguments_is_the_offline_static_default() -> None:
    cfg = CarbonConfig()
    assert cfg.fallback == ["static"] and cfg.providers == []
    [static] = cfg.chain()
    assert static.type == "static"
    assert isinstance(static.options, StaticOptions) and static.options.builtin is True
    assert cfg.zone_label == "topology.kubernetes.io/region"


def test_policy_fragment_equals_default() -> None:
    section = yaml.safe_load(POLICY.read_text())["carbon"]
    assert CarbonConfig.model_validate(section) == CarbonConfig()
    assert load_carbon_section(None) == CarbonConfig()


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("5m", 300), ("1h", 3600), ("1h30m", 5400), ("250ms", 0.25), ("2d", 172800)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


def test_full_chain_with_static_overrides() -> None:
    cfg = CarbonConfig.model_validate(
        {
            "providers": [
                {"name": "electricitymaps", "refresh": "5m", "timeout": "3s"},
                {"name": "gb", "type": "ukgrid", "refresh": "15m"},
            ],
            "fallback": ["electricitymaps", "gb", "static"],
            "staleAfter": "90m",
            "static": {"DE": 380},
            "zones": {"my-dc": "eu-central-1", "lab": "my-dc"},
        }
    )
    em, gb, static = cfg.chain()
    assert (em.refresh, em.timeout, gb.type, cfg.stale_after) == (300, 3, "ukgrid", 5400)
    assert isinstance(static.options, StaticOptions) and static.options.values == {"DE": 380}


def message(data: dict[str, object]) -> str:
    with pytest.raises(ValidationError) as info:
        CarbonConfig.model_validate(data)
    return str(info.value)


def test_bad_duration_names_field_and_fix() -> None:
    msg = message({"staleAfter": "soon"})
    assert "staleAfter" in msg and "'5m'" in msg


def test_unknown_provider_type() -> None:
    msg = message({"providers": [{"name": "x", "type": "nope"}], "fallback": ["x", "static"]})
    assert "carbon.providers[0].type" in msg and "electricitymaps" in msg


def test_chain_must_end_with_static() -> None:
    msg = message({"providers": [{"name": "ukgrid"}], "fallback": ["ukgrid"]})
    assert "carbon.fallback" in msg and "add 'static' as the last entry" in msg


def test_fallback_names_must_be_declared() -> None:
    msg = message({"fallback": ["electricitymaps", "static"]})
    assert "carbon.fallback[0]" in msg and "define it under carbon.providers" in msg


def test_zone_mapping_loop_rejected() -> None:
    msg = message({"zones": {"a": "b", "b": "c", "c": "a"}})
    assert "zones" in msg and "loop a -> b -> c -> a" in msg


def test_static_value_out_of_range() -> None:
    msg = message({"static": {"DE": 2500}})
    assert "static" in msg and "between 0 and 2000" in msg


def test_unknown_field_rejected() -> None:
    with pytest.raises(ValidationError) as info:
        CarbonConfig.model_validate({"stale_afterr": "1h"})
    # pydantic's error type, not its English: the policy validator words it for the user
    [error] = info.value.errors()
    assert (error["type"], error["loc"]) == ("extra_forbidden", ("stale_afterr",))


def test_duplicate_provider_names() -> None:
    msg = message({"providers": [{"name": "a", "type": "ukgrid"}, {"name": "a", "type": "ukgrid"}]})
    assert "carbon.providers[1].name" in msg and "duplicate" in msg
