"""Contract tests over the provider registry: every type has tests, typed options, the protocol.

Each test is parametrised over :data:`carbon.providers.registry.REGISTRY`: a new provider fails
here until its test module ``test_provider_<type>.py`` exists and declares a ``CONTRACT`` (a zone,
settings and fixture routes that make ``latest`` return a valid point). Third-party types come
from the ``lowcarb.carbon_providers`` entry-point group and are loaded only when asked for.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError

from carbon.cache import CarbonCache
from carbon.config import CarbonConfig, ProviderConfig
from carbon.datadir import data_dir
from carbon.providers import registry as providers
from carbon.providers.base import Provider, ProviderOptions
from carbon.providers.registry import REGISTRY, create_provider, options_model, registry
from carbon.types import IntensityPoint
from tests.support.carbon import ContractCase, Handler, Recorder, json_response

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
BUILT_IN = sorted(REGISTRY)


def contract(type_name: str) -> ContractCase:
    """The ``CONTRACT`` that the type's own test module declares."""
    module = importlib.import_module(f"tests.carbon.test_provider_{type_name}")
    case = getattr(module, "CONTRACT", None)
    assert isinstance(case, ContractCase), f"{module.__name__} declares no CONTRACT"
    return case


@pytest.mark.parametrize("type_name", BUILT_IN)
def test_every_registered_provider_has_tests(type_name: str) -> None:
    module = HERE / f"test_provider_{type_name}.py"
    assert module.is_file(), f"provider {type_name!r} has no test module {module.name}"
    contract(type_name)


@pytest.mark.parametrize("type_name", BUILT_IN)
def test_provider_is_defined_in_its_own_module(type_name: str) -> None:
    cls = REGISTRY[type_name]
    assert cls.__module__ == f"carbon.providers.{type_name}"
    params = inspect.signature(cls).parameters
    assert list(params)[:1] == ["config"]
    assert {"transport", "clock"} <= set(params)


@pytest.mark.parametrize("type_name", BUILT_IN)
def test_options_are_typed_and_reject_unknown_keys(type_name: str) -> None:
    model = options_model(type_name)
    assert model is not None and issubclass(model, ProviderOptions)
    assert model.model_config.get("extra") == "forbid"
    model()  # every option has a default: a provider entry needs none
    cfg = ProviderConfig(name=f"my-{type_name}", type=type_name)
    assert isinstance(cfg.options, model)  # the entry holds its type's options, defaults filled
    with pytest.raises(ValidationError) as info:
        ProviderConfig.model_validate(
            {"name": f"my-{type_name}", "type": type_name, "options": {"bogus": 1}}
        )
    [err] = info.value.errors()
    assert (err["type"], err["loc"]) == ("extra_forbidden", ("options", "bogus"))


@pytest.mark.parametrize("type_name", BUILT_IN)
async def test_provider_honours_protocol(type_name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    case = contract(type_name)
    if case.needs_data and data_dir() is None:
        pytest.skip("shared data dir absent (set LOWCARB_DATA to ../shared/data)")
    for name, value in case.env.items():
        monkeypatch.setenv(name, value)
    config = ProviderConfig.model_validate(
        {"name": f"my-{type_name}", "type": type_name, **case.settings}
    )
    routes: dict[str, Handler | httpx.Response] = {
        path: json_response(rel) for path, rel in case.routes.items()
    }
    prov = create_provider(config, transport=Recorder(routes).transport(), clock=lambda: case.now)
    assert isinstance(prov, Provider) and isinstance(prov, REGISTRY[type_name])
    assert prov.name == f"my-{type_name}"
    points = await prov.latest([case.zone])
    assert len(points) == 1
    p = points[0]
    assert isinstance(p, IntensityPoint) and p.zone == case.zone
    assert p.start.tzinfo is not None and p.end > p.start
    assert 0 <= p.g_per_kwh <= 2000
    assert p.kind in ("average", "marginal") and p.factor in ("lifecycle", "direct")
    await prov.aclose()


def test_replay_factor_typo_is_an_error_not_lca() -> None:
    """``factor: direkt`` used to be served silently as lca; now it names the field and choices."""
    with pytest.raises(ValidationError) as info:
        CarbonConfig.model_validate(
            {
                "providers": [{"name": "replay", "options": {"factor": "direkt"}}],
                "fallback": ["replay", "static"],
            }
        )
    [err] = info.value.errors()
    assert err["type"] == "literal_error"
    assert err["loc"] == ("providers", 0, "options", "factor")
    ok = CarbonConfig.model_validate(
        {
            "providers": [{"name": "replay", "options": {"factor": "direct", "shift": False}}],
            "fallback": ["replay", "static"],
        }
    )
    opts = ok.provider("replay").options
    assert opts.model_dump() == {"year": 2023, "factor": "direct", "root": None, "shift": False}


def test_empty_config_imports_neither_pandas_nor_pyarrow() -> None:
    """Validating the offline default must not load the replay provider's data stack."""
    code = (
        "import sys\n"
        "from carbon.config import CarbonConfig\n"
        "CarbonConfig()\n"
        "print(sorted(m for m in ('pandas', 'pyarrow') if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


@pytest.fixture
def plugin_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A folder on sys.path holding an installed distribution ``lowcarb-fake-plugin``."""
    dist = tmp_path / "lowcarb_fake_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: lowcarb-fake-plugin\nVersion: 1.0\n"
    )
    (dist / "entry_points.txt").write_text(
        "[lowcarb.carbon_providers]\n"
        "fixed42 = lowcarb_fake_plugin:Fixed\n"
        "broken = lowcarb_fake_plugin_missing:Nope\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(providers, "_plugins", {})
    yield tmp_path
    sys.modules.pop("lowcarb_fake_plugin", None)


async def test_third_party_provider_via_entry_point(plugin_dir: Path) -> None:
    (plugin_dir / "lowcarb_fake_plugin.py").write_text(
        textwrap.dedent(
            """
            from datetime import timedelta
            from carbon.types import IntensityPoint
            from carbon.providers.base import ProviderOptions, utc

            class FixedOptions(ProviderOptions):
                value: float = 42.0

            class Fixed:
                Options = FixedOptions

                def __init__(self, config, *, transport=None, clock=None):
                    self.name, self.config, self.clock = config.name, config, clock

                async def latest(self, zones):
                    now, g = utc(self.clock()), self.config.options.value
                    return [IntensityPoint(z, now, now + timedelta(hours=1), g) for z in zones]

                async def forecast(self, zone, start, end):
                    return []

                async def history(self, zone, start, end):
                    return []

                async def aclose(self):
                    pass
            """
        )
    )
    CarbonConfig()
    assert "lowcarb_fake_plugin" not in sys.modules  # loaded only when a policy names it
    assert "fixed42" in registry() and "broken" not in registry()
    with pytest.raises(ValidationError) as info:
        CarbonConfig.model_validate(
            {"providers": [{"name": "fixed42", "options": {"value": "high"}}]}
        )
    assert info.value.errors()[0]["loc"] == ("providers", 0, "options", "value")
    cfg = CarbonConfig.model_validate(
        {
            "providers": [{"name": "fixed42", "options": {"value": 41.5}}],
            "fallback": ["fixed42", "static"],
        }
    )
    cache = CarbonCache(cfg, clock=lambda: 1.7e9, zones=["DE"])
    snap = await cache.refresh_once()
    reading = snap.reading("DE")
    assert reading is not None and (reading.source, reading.g_per_kwh) == ("fixed42", 41.5)
    await cache.stop()


def test_broken_plugin_is_logged_and_unknown(
    plugin_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with (
        caplog.at_level(logging.ERROR, logger="lowcarb.carbon.providers"),
        pytest.raises(ValidationError) as info,
    ):
        CarbonConfig.model_validate(
            {"providers": [{"name": "broken"}], "fallback": ["broken", "static"]}
        )
    assert "carbon.providers[0].type: unknown provider type 'broken'" in str(info.value)
    assert any("lowcarb_fake_plugin_missing:Nope" in r.getMessage() for r in caplog.records)
