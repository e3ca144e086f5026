"""Typed provider options: each type's own model, checked by ``lowcarb policy validate``.

Options used to be a free dict (``replay`` served ``factor: direkt`` silently as ``lca``); now a
provider entry's ``options`` are validated by its type's ``Options`` model and every mistake is
reported with file, line, column and field path, in the same pass as the other errors.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from carbon.cache import CarbonCache
from carbon.config import CarbonConfig, ProviderConfig
from carbon.providers.base import ProviderOptions, UncheckedOptions
from carbon.providers.replay import ReplayOptions, ReplayProvider
from carbon.providers.static import StaticOptions, static_values
from scheduler.cli.main import app as lowcarb
from scheduler.policy.validate import check_text, validate_text

BAD = """\
apiVersion: lowcarb.dev/v2
kind: Policy
carbon:
  providers:
    - name: replay
      options:
        factor: direkt
        yaer: 2023
    - name: electricitymaps
      options: {year: 2023}
    - name: mine
      type: static
      options: {values: {DE: 2500}}
    - name: em
      type: electricitymap
      options: {anything: 1}
  fallback: [replay, static]
"""


def test_policy_validate_reports_each_option_with_line_and_column(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD)
    result = CliRunner().invoke(lowcarb, ["policy", "validate", str(bad)])
    assert result.exit_code == 1
    errors = [line.strip() for line in result.stderr.splitlines() if line.startswith(str(bad))]
    assert errors[:5] == [
        f"{bad}:7:17: carbon.providers[0].options.factor: must be one of 'lca' or 'direct' "
        "(got 'direkt'), did you mean 'direct'?",
        f"{bad}:8:9: carbon.providers[0].options: unknown key 'yaer'",
        f"{bad}:10:17: carbon.providers[1].options: unknown key 'year'",
        f"{bad}:13:30: carbon.providers[2].options.values.DE: 2500 is out of range; use "
        "gCO2e/kWh between 0 and 2000",
        f"{bad}:15:13: carbon.providers[3].type: unknown provider type 'electricitymap', did you "
        "mean 'electricitymaps'? (use one of carbonaware, electricitymaps, replay, static, "
        "ukgrid, watttime, or install a plugin exposing it under the "
        "'lowcarb.carbon_providers' entry-point group)",
    ]
    assert f"{bad}: invalid (5 errors)" in result.stderr


def test_unknown_type_is_the_one_error_not_its_options() -> None:
    _, issues = validate_text(BAD.replace("direkt", "direct").replace("yaer", "year"), "p.yaml")
    paths = [i.path for i in issues]
    assert "carbon.providers[3].options" not in paths and "carbon.providers[3].type" in paths


def test_valid_options_reach_the_provider() -> None:
    policy = check_text(
        "apiVersion: lowcarb.dev/v2\nkind: Policy\ncarbon:\n  providers:\n"
        "    - name: replay\n      options: {factor: direct, shift: false, year: '2022'}\n"
        "  fallback: [replay, static]\n"
    )
    cache = CarbonCache(policy.carbon, clock=lambda: 1.7e9)
    replay = cache.providers()["replay"]
    assert isinstance(replay, ReplayProvider)
    assert replay.options == ReplayOptions(year=2022, factor="direct", shift=False)


def test_options_of_a_config_built_in_code() -> None:
    cfg = ProviderConfig(name="r", type="replay", options=ReplayOptions(factor="direct"))
    assert cfg.options == ReplayOptions(factor="direct")
    dumped = ProviderConfig.model_validate(cfg.model_dump(by_alias=True))
    assert dumped == cfg  # a dumped entry validates back to the same typed options
    bare = ReplayProvider(ProviderConfig(name="r", type="replay"))
    assert bare.options == ReplayOptions()  # defaults, not a silent fallback
    with pytest.raises(ValidationError):
        ProviderConfig(name="r", type="replay", options=StaticOptions(builtin=False))
    unknown = ProviderConfig.model_validate({"name": "x", "type": "nope", "options": {"a": 1}})
    assert isinstance(unknown.options, UncheckedOptions)
    assert type(ProviderConfig(name="ukgrid").options) is ProviderOptions  # takes no options


def test_static_options_merge_with_the_carbon_section() -> None:
    cfg = CarbonConfig.model_validate(
        {
            "providers": [{"name": "static", "options": {"values": {"FR": 50}}}],
            "static": {"DE": 380, "FR": 60},
            "builtinStatic": False,
        }
    )
    static = cfg.provider("static")
    assert static.options == StaticOptions(values={"DE": 380, "FR": 50}, builtin=False)
    assert static_values(static) == {"DE": 380.0, "FR": 50.0}
    own = CarbonConfig.model_validate(
        {"providers": [{"name": "static", "options": {"builtin": True}}], "builtinStatic": False}
    )
    assert own.provider("static").options == StaticOptions(values={}, builtin=True)
    assert static_values(own.provider("static"))["PL"] == 819.2
