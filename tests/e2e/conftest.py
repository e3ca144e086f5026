"""Session set-up of the e2e suite: one real control plane, lowcarb and kube-schedulers for all.

Collected only by ``make e2e`` (``LOWCARB_E2E=1``) or when ``tests/e2e`` is named on the command
line, so ``make test`` never starts a control plane. Without the binaries the tests skip with what
is needed, except under ``CI=true``, where that is an error.

Started once per session, torn down even on failure (process groups killed, also at exit):
etcd, kube-apiserver (Node,RBAC), lowcarb ``A`` (``lowcarb serve`` in cluster mode with the token
of the ServiceAccount ``deploy/`` ships, bound to exactly ``rbac-lowcarb.yaml``, with a ledger and
a policy whose replay source serves crafted series), and two kube-schedulers with the shipped
extender entry pointing at A: profile ``lowcarb`` (``nodeCacheCapable: true``) and profile
``lowcarb-full`` (``nodeCacheCapable: false``). The temporal-shift scenario starts right away (its
pods wait for clock time while the other modules run); ``test_gates.py`` checks it near the end.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from carbon.clock import wall
from tests.e2e import kubebin
from tests.e2e.controlplane import ControlPlane, shipped_extender
from tests.e2e.e2e_support import SHORTLIST, Session, new_lowcarb, write_policy
from tests.e2e.kubeapi import KubeApi
from tests.e2e.lowcarbproc import Lowcarb

HERE = Path(__file__).resolve().parent

#: module order: the gate scenario's pods wait on clock time while the other modules run; the
#: resilience module (own lowcarb B) never restarts A, whose gate controller holds them; the
#: API-server restart comes after the planned releases; fail-open needs A past its 180 s grace
ORDER = [
    "test_binding",
    "test_rbac",
    "test_placement",
    "test_resilience",
    "test_gates",
    "test_apiserver_restart",
    "test_gates_failopen",
    "test_accounting",
]
SCHEDULER_CACHE = "lowcarb"
SCHEDULER_FULL = "lowcarb-full"


def _enabled(config: pytest.Config) -> bool:
    if os.environ.get("LOWCARB_E2E") == "1":
        return True
    for arg in config.args:
        path = Path(arg.split("::")[0]).resolve()
        if path == HERE or HERE in path.parents:
            return True
    return False


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    if collection_path.name.startswith("test_") and not _enabled(config):
        return True  # `make e2e` runs these; `make test` stays free of control planes
    return None


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        module = item.path.stem
        return ORDER.index(module) if module in ORDER else len(ORDER)

    items.sort(key=rank)  # stable: keeps the order inside a module


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Any:
    report = yield
    plane: ControlPlane | None = getattr(item.session, "e2e_plane", None)
    if report.failed and plane is not None:
        for proc in [*plane.procs, *getattr(item.session, "e2e_lowcarbs", [])]:
            proc = getattr(proc, "proc", proc)
            if proc is not None:
                report.sections.append((f"log tail: {proc.name}", proc.log_tail(25)))
    return report


@pytest.fixture(scope="session")
def kube_bin() -> Path:
    try:
        return kubebin.prepare()
    except kubebin.KubeBinMissing as exc:
        if kubebin.in_ci():
            pytest.fail(f"CI=true requires the e2e run: {exc}", pytrace=False)
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def workdir() -> Iterator[Path]:
    """Logs, certificates, ledgers; kept for inspection with LOWCARB_E2E_KEEP=1."""
    if os.environ.get("LOWCARB_E2E_KEEP") == "1":
        kept = Path(tempfile.mkdtemp(prefix="lowcarb-e2e-"))
        print(f"\ne2e: work directory kept at {kept}")
        yield kept
        return
    with tempfile.TemporaryDirectory(prefix="lowcarb-e2e-") as tmp:
        yield Path(tmp)


@pytest.fixture(scope="session")
def session_state() -> Session:
    return Session()


@pytest.fixture(scope="session")
def plane(
    kube_bin: Path, workdir: Path, request: pytest.FixtureRequest, session_state: Session
) -> Iterator[ControlPlane]:
    started = time.monotonic()
    cp = ControlPlane(kube_bin, workdir / "plane")
    request.session.e2e_plane = cp  # type: ignore[attr-defined]
    request.session.e2e_lowcarbs = []  # type: ignore[attr-defined]
    try:
        cp.start()
        session_state.timings["plane_start_s"] = time.monotonic() - started
        yield cp
    finally:
        cp.stop()
        steps = ", ".join(
            f"{k} {v:.1f}" for k, v in session_state.timings.items() if k.endswith("_s")
        )
        print(f"\ne2e: control plane up for {time.monotonic() - started:.0f}s ({steps})")


@pytest.fixture(scope="session")
def api(plane: ControlPlane) -> KubeApi:
    return plane.api


@pytest.fixture(scope="session")
def lowcarb_identity(plane: ControlPlane) -> dict[str, Any]:
    """deploy/'s ServiceAccount and rbac-lowcarb.yaml applied; a token for that account."""
    namespace, token, docs = plane.install_lowcarb_rbac()
    return {
        "namespace": namespace,
        "token": token,
        "docs": docs,
        "kubeconfig": plane.kubeconfig("lowcarb-sa", token),
    }


@pytest.fixture(scope="session")
def replay_root(workdir: Path) -> Path:
    root = workdir / "replay"
    root.mkdir()
    return root


@pytest.fixture(scope="session")
def policy_file(workdir: Path, replay_root: Path) -> Path:
    return write_policy(workdir / "policy.yaml", replay_root)


@pytest.fixture(scope="session")
def lowcarb(
    request: pytest.FixtureRequest,
    plane: ControlPlane,
    workdir: Path,
    lowcarb_identity: dict[str, Any],
    policy_file: Path,
    session_state: Session,
) -> Iterator[Lowcarb]:
    """lowcarb A, as its ServiceAccount; the schedulers ``lowcarb``/``lowcarb-full`` call it."""
    lc = new_lowcarb(
        request, workdir, lowcarb_identity["kubeconfig"], policy_file, "lowcarb-a", session_state
    )
    # pools here have 2 to 9 nodes: a shortlist of 2 (shipped: 100) puts every test's filter
    # answers, prioritize from the filter's pricing and binds through it (test_placement.py)
    lc.extra_args.append(f"--shortlist={SHORTLIST}")
    try:
        session_state.timings["lowcarb_a_launched"] = wall()
        lc.start()
        session_state.timings["lowcarb_a_started"] = wall()
        session_state.timings["lowcarb_start_s"] = (
            wall() - session_state.timings["lowcarb_a_launched"]
        )
        yield lc
    finally:
        lc.stop()


@pytest.fixture(scope="session")
def schedulers(plane: ControlPlane, lowcarb: Lowcarb, session_state: Session) -> dict[str, str]:
    """Two kube-schedulers with the shipped extender entry: names the pods use, per mode."""
    started = time.monotonic()
    plane.start_scheduler(
        "kube-scheduler-cache",
        [SCHEDULER_CACHE],
        [shipped_extender(lowcarb.url, node_cache_capable=True)],
    )
    plane.start_scheduler(
        "kube-scheduler-full",
        [SCHEDULER_FULL],
        [shipped_extender(lowcarb.url, node_cache_capable=False)],
    )
    session_state.timings["schedulers_start_s"] = time.monotonic() - started
    return {"cache": SCHEDULER_CACHE, "full": SCHEDULER_FULL}


@pytest.fixture(scope="session", autouse=True)
def gate_scenario(request: pytest.FixtureRequest, kube_bin: Path, session_state: Session) -> Any:
    """Starts the temporal-shift scenario as early as possible (it runs on clock time)."""
    if not any(item.path.stem.startswith("test_gates") for item in request.session.items):
        return None
    from tests.e2e.gates_scenario import GateScenario

    scenario = GateScenario(
        api=request.getfixturevalue("api"),
        replay_root=request.getfixturevalue("replay_root"),
        scheduler=request.getfixturevalue("schedulers")["cache"],
        lowcarb=request.getfixturevalue("lowcarb"),
    )
    session_state.namespaces.add(scenario.namespace)
    started = time.monotonic()
    scenario.start()
    session_state.timings["gate_scenario_start_s"] = time.monotonic() - started
    request.addfinalizer(scenario.stop)
    return scenario


@pytest.fixture(scope="module")
def scenario(gate_scenario: Any) -> Any:
    """The running temporal-shift scenario (test_gates*, checked late in the session)."""
    if gate_scenario is None:
        pytest.skip("the gate scenario did not start")
    return gate_scenario
