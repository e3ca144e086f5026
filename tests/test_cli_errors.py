"""Bad command-line input gets lowcarb's one line on stderr naming the option and the fix, exit 2.

One test per class of mistake, through the real ``lowcarb`` app (typer's CliRunner) or, for what
``serve`` checks at start-up, the installed ``lowcarb`` command itself. Assertions are on
lowcarb's own wording (``lowcarb: error: <option>: ...; <fix>``), never on typer's or click's.
"""

from __future__ import annotations

import errno
import re
import socket
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest
import trustme
from typer.testing import CliRunner

from scheduler.cli.errors import command_app
from scheduler.cli.main import app as lowcarb
from scheduler.policy.validate import validate_text
from tests.support.fakeapi import lowcarb_command

BAD_POLICY = "apiVersion: lowcarb.dev/v2\nkind: Policy\nclasses: {a: {gpuMode: x}, b: 1}\n"


def assert_usage_line(exit_code: int, stderr: str, option: str) -> str:
    """Exit 2, one line of lowcarb's, naming ``option`` and a fix after '; ', no traceback."""
    assert "Traceback" not in stderr
    assert exit_code == 2, stderr
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    line = lines[0]
    assert line.startswith(f"lowcarb: error: {option}"), line
    assert "; " in line, f"no fix in: {line}"
    return line


def invoke(args: Sequence[str]) -> tuple[int, str]:
    result = CliRunner().invoke(lowcarb, list(args))
    return result.exit_code, result.stderr


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    bad = tmp_path / "bad-policy.yaml"
    bad.write_text(BAD_POLICY)
    some = tmp_path / "some.json"
    some.write_text("{}")
    empty_ledger = tmp_path / "ledger.sqlite"
    empty_ledger.write_bytes(b"")
    return {
        "missing": tmp_path / "nosuch.yaml",
        "dir": tmp_path,
        "bad_policy": bad,
        "some": some,
        "ledger": empty_ledger,
        "no_folder": tmp_path / "no" / "such" / "out.json",
    }


# --- a file that is not there, a folder given as a file, an output folder that is missing


@pytest.mark.parametrize(
    ("args", "option", "named"),
    [
        (["serve", "--policy", "{missing}"], "--policy", "missing"),
        (["serve", "--kubeconfig", "{missing}"], "--kubeconfig", "missing"),
        (["serve", "--tls-cert", "{missing}", "--tls-key", "{some}"], "--tls-cert", "missing"),
        (["serve", "--tls-cert", "{some}", "--tls-key", "{missing}"], "--tls-key", "missing"),
        (["serve", "--client-ca", "{missing}"], "--client-ca", "missing"),
        (["serve", "--policy", "{dir}"], "--policy", "dir"),
        (["serve", "--ledger", "{no_folder}"], "--ledger", "no_folder"),
        (["gates", "plan", "--policy", "{missing}"], "--policy", "missing"),
        (["gates", "run", "--kubeconfig", "{missing}"], "--kubeconfig", "missing"),
        (["gates", "run", "--ledger", "{dir}"], "--ledger", "dir"),
        (["explain", "--pod", "{missing}", "--nodes", "{some}"], "--pod", "missing"),
        (["explain", "--pod", "{some}", "--nodes", "{missing}"], "--nodes", "missing"),
        (["explain", "--pod", "{some}", "--nodes", "{some}", "--pods", "{dir}"], "--pods", "dir"),
        (["report", "--ledger", "{missing}"], "--ledger", "missing"),
        (["report", "--ledger", "{ledger}", "--out", "{no_folder}"], "--out", "no_folder"),
        (["simulate", "--power", "{missing}"], "--power", "missing"),
        (["simulate", "--nodes", "{missing}"], "--nodes", "missing"),
        (["simulate", "--ledger", "{no_folder}"], "--ledger", "no_folder"),
        (["carbon", "show", "--zones", "DE", "--policy", "{missing}"], "--policy", "missing"),
        (["policy", "schema", "--output", "{no_folder}"], "--output", "no_folder"),
    ],
)
def test_missing_file_names_the_option(
    files: dict[str, Path], args: list[str], option: str, named: str
) -> None:
    code, err = invoke([a.format(**files) for a in args])
    line = assert_usage_line(code, err, option)
    # the line names the path at fault: the file, or the folder that is missing
    path = files[named].parent if named == "no_folder" else files[named]
    assert repr(str(path)) in line


# --- a policy that fails validation: the validator's file:line:column lines, as policy validate


@pytest.mark.parametrize(
    "args",
    [
        ["gates", "plan", "--policy", "{bad_policy}"],
        ["explain", "--pod", "{some}", "--nodes", "{some}", "--policy", "{bad_policy}"],
    ],
)
def test_bad_policy_prints_the_validator_lines(files: dict[str, Path], args: list[str]) -> None:
    code, err = invoke([a.format(**files) for a in args])
    check_policy_error(code, err, files["bad_policy"])


def check_policy_error(code: int, err: str, bad: Path) -> None:
    assert "Traceback" not in err
    assert code == 2, err
    _, issues = validate_text(bad.read_text(), str(bad))
    assert len(issues) >= 2  # the fixture has two mistakes; both are reported
    head, *rest = err.splitlines()
    assert head.startswith(f"lowcarb: error: --policy: {bad}: invalid policy ({len(issues)} ")
    assert "; fix the lines below" in head
    assert rest == [str(i) for i in issues]  # exactly what `lowcarb policy validate` lists
    assert all(re.match(rf"{re.escape(str(bad))}:\d+:\d+: ", line) for line in rest)


# --- numbers out of range (typer's min/max, lowcarb's positive check)


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["serve", "--port", "99999"], "--port"),
        (["serve", "--port", "0"], "--port"),
        (["serve", "--max-body", "0"], "--max-body"),
        (["simulate", "--pods", "0"], "--pods"),
        (["simulate", "--slack", "-5"], "--slack"),
        (["simulate", "--min-saving", "2"], "--min-saving"),
        (["simulate", "--seed", "-1"], "--seed"),
        (["simulate", "--load-scale", "0"], "--load-scale"),
        (["gates", "run", "--tick", "0"], "--tick"),
        (["gates", "run", "--metrics-port", "70000"], "--metrics-port"),
        (["gates", "plan", "--timeout", "-1"], "--timeout"),
    ],
)
def test_out_of_range_number_names_the_option(args: list[str], option: str) -> None:
    code, err = invoke(args)
    assert_usage_line(code, err, option)


# --- a value that is not one of the choices, not a number, not a date, not a list


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["serve", "--log-level", "loud"], "--log-level"),
        (["serve", "--port", "eighty"], "--port"),
        (["policy", "validate", "--format", "xml", "{some}"], "--format"),
        (["simulate", "--lwa", "XX"], "--lwa"),
        (["simulate", "--zones", " , "], "--zones"),
        (["report", "--ledger", "{ledger}", "--format", "xml"], "--format"),
        (["report", "--ledger", "{ledger}", "--from", "last tuesday"], "--from"),
        (["report", "--ledger", "{ledger}", "--group-by", "planet"], "--group-by"),
        (["report", "--ledger", "{ledger}", "--plot", "-"], "--plot"),
        (["carbon", "show", "--zones", ","], "--zones"),
        (["carbon", "show", "--zones", "DE", "--forecast", "soon"], "--forecast"),
        (["carbon", "show", "--zones", "DE", "--provider", "nosuchprovider"], "--provider"),
        (["carbon", "show", "--zones", "DE", "--fallback", "nosuchprovider"], "--fallback"),
        (["carbon", "show"], "--zones"),  # required
        (["serve", "--prot", "8888"], "--prot"),  # unknown option
        (["serve", "--ledger", "mysql://u@db/ledger"], "--ledger"),  # one ledger-target parser
        (["gates", "run", "--ledger", "mysql://u@db/ledger"], "--ledger"),
        (["report", "--ledger", "mysql://u@db/ledger"], "--ledger"),
    ],
)
def test_bad_choice_or_format_names_the_option(
    files: dict[str, Path], args: list[str], option: str
) -> None:
    code, err = invoke([a.format(**files) for a in args])
    assert_usage_line(code, err, option)


def test_unknown_command_is_one_line() -> None:
    code, err = invoke(["serv"])
    assert code == 2 and len(err.splitlines()) == 1 and err.startswith("lowcarb: error: ")


# --- '-' means standard output


def test_dash_means_stdout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    to_file = tmp_path / "schema.json"
    result = CliRunner().invoke(lowcarb, ["policy", "schema", "--output", str(to_file)])
    assert result.exit_code == 0, result.stderr
    result = CliRunner().invoke(lowcarb, ["policy", "schema", "--output", "-"])
    assert result.exit_code == 0, result.stderr
    assert result.stdout == to_file.read_text()
    assert not (tmp_path / "-").exists()  # not a file named '-'


# --- start-up failures of the real `lowcarb serve`: before uvicorn starts, one line, exit 2


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("pki")
    ca = trustme.CA()
    one, two = ca.issue_cert("127.0.0.1"), ca.issue_cert("127.0.0.1")
    paths = {name: out / f"{name}.pem" for name in ("cert", "key", "other_key", "junk")}
    one.cert_chain_pems[0].write_to_path(str(paths["cert"]))
    one.private_key_pem.write_to_path(str(paths["key"]))
    two.private_key_pem.write_to_path(str(paths["other_key"]))
    paths["junk"].write_text("not a certificate\n")
    return paths


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["--tls-cert", "{cert}", "--tls-key", "{other_key}"], "--tls-cert/--tls-key"),
        (["--tls-cert", "{junk}", "--tls-key", "{key}"], "--tls-cert/--tls-key"),
        (["--tls-cert", "{cert}", "--tls-key", "{key}", "--client-ca", "{junk}"], "--client-ca"),
        (["--client-ca", "{junk}"], "--client-ca"),
        (["--tls-cert", "{cert}"], "--tls-key"),
        (["--tls-key", "{key}"], "--tls-cert"),
        (["--kubeconfig", "{cert}", "--in-cluster"], "--in-cluster"),
    ],
)
def test_serve_option_clashes_and_tls_files(
    pki: dict[str, Path], args: list[str], option: str
) -> None:
    """Checked before anything starts (and before logging is set up, so in-process here)."""
    code, err = invoke(["serve", *(a.format(**pki) for a in args)])
    assert_usage_line(code, err, option)


def test_serve_startup_failures_are_one_line(tmp_path: Path, files: dict[str, Path]) -> None:
    """The real command: a port in use, an address not here, a kubeconfig, a policy."""
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    port = str(busy.getsockname()[1])
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("apiVersion: v1\nkind: Config\n")  # no cluster, no context
    cases: dict[str, tuple[list[str], str]] = {
        "port in use": ([], "--port"),
        "address not on this machine": (["--host", "192.0.2.1"], "--host"),  # TEST-NET-1
        "unusable kubeconfig": (["--kubeconfig", str(kubeconfig)], "--kubeconfig"),
        "bad policy": (["--policy", str(files["bad_policy"])], "--policy"),
    }
    # every case uses the busy port: one that got past its own check fails there, never hangs
    base = [*lowcarb_command(), "serve", "--host", "127.0.0.1", "--port", port]
    try:
        procs = {
            name: subprocess.Popen(
                [*base, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
            for name, (args, _) in cases.items()
        }
        results = {name: p.communicate(timeout=120) for name, p in procs.items()}
    finally:
        busy.close()
    for name, (_, option) in cases.items():
        out, err = results[name]
        code = procs[name].returncode
        if name == "bad policy":
            check_policy_error(code, err, files["bad_policy"])
        else:
            line = assert_usage_line(code, err, option)
            if name == "port in use":
                assert f"127.0.0.1:{port}" in line
        assert "Uvicorn running" not in out + err and '"starting"' not in err, name


# --- an internal error (a bug): one line and exit 1; the traceback only with --debug


def _broken() -> None:
    raise RuntimeError("the widget\nbroke")


def test_internal_error_is_one_line_without_debug(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LOWCARB_DEBUG", raising=False)
    result = CliRunner().invoke(command_app(_broken), [])
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        "lowcarb: internal error: RuntimeError: the widget broke; this is a bug in lowcarb: rerun "
        "with 'lowcarb --debug ...' (or LOWCARB_DEBUG=1) for the traceback and report it"
    ]
    monkeypatch.setenv("LOWCARB_DEBUG", "1")
    result = CliRunner().invoke(command_app(_broken), [])
    assert isinstance(result.exception, RuntimeError)  # raised on: typer prints the traceback


def _reader_gone() -> None:
    raise BrokenPipeError(errno.EPIPE, "Broken pipe")  # lowcarb report --out - | head -1


def test_a_reader_that_went_away_is_not_an_internal_error() -> None:
    result = CliRunner().invoke(command_app(_reader_gone), [])
    assert result.exit_code == 1
    assert "internal error" not in result.stderr and "Traceback" not in result.stderr


def test_debug_flag_is_accepted_by_the_real_command() -> None:
    result = CliRunner().invoke(lowcarb, ["--debug", "version"])
    assert result.exit_code == 0 and result.stdout.startswith("lowcarb ")
