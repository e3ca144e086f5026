"""Inputs the scheduler's commands share, checked into lowcarb usage errors naming the option.

``policy_errors`` turns a :class:`~scheduler.policy.validate.PolicyError` into one ``lowcarb:
error:``
line followed by the validator's ``file:line:column`` lines (the same lines ``lowcarb policy
validate`` prints); ``kube_config`` loads a kubeconfig (or the in-cluster account) and the TLS
files it names, or says which option is wrong; ``ledger_option`` checks a ledger that a command
writes (``serve``, ``gates run``): a ``postgresql://`` URL, or a file in an existing folder.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from carbon.accounting.ledger import LedgerError, parse_target
from scheduler.cli.errors import UsageError, blame, require, writable_path
from scheduler.policy.validate import PolicyError

if TYPE_CHECKING:
    from scheduler.kube import KubeConfig


@contextlib.contextmanager
def policy_errors(option: str = "--policy") -> Iterator[None]:
    """A policy that fails validation inside becomes a UsageError with every issue's line."""
    try:
        yield
    except PolicyError as exc:
        n = len(exc.issues)
        where = f"{exc.issues[0].file}: " if exc.issues else ""
        raise UsageError(
            option,
            f"{where}invalid policy ({n} error{'s' if n != 1 else ''})",
            "fix the line below" if n == 1 else "fix the lines below",
            details=[str(issue) for issue in exc.issues],
        ) from None


def check_cluster_options(kubeconfig: Path | None, in_cluster: bool) -> None:
    require(
        kubeconfig is None or not in_cluster,
        "--in-cluster",
        "cannot be combined with --kubeconfig",
        "give one of them",
    )


def kube_config(kubeconfig: Path | None, in_cluster: bool) -> KubeConfig:
    """The cluster's connection settings, with the TLS files they name already readable."""
    from scheduler import kube

    check_cluster_options(kubeconfig, in_cluster)
    option = "--in-cluster" if in_cluster else "--kubeconfig"
    try:
        config = kube.load_config(str(kubeconfig) if kubeconfig else None, in_cluster=in_cluster)
    except kube.KubeError as exc:
        raise UsageError(option, str(exc)) from None
    try:
        config.ssl_context()
    except OSError as exc:  # ssl.SSLError is an OSError
        raise UsageError(
            option,
            f"cannot use the certificate files it names: {exc}",
            "fix certificate-authority / client-certificate / client-key in the kubeconfig",
        ) from None
    return config


def ledger_option(param: typer.CallbackParam, value: str | None) -> str | None:
    """Option callback: a postgresql:// URL, or a file to create or update in an existing folder."""
    if value is not None:
        with blame("--ledger", LedgerError):
            target = parse_target(value)
        if isinstance(target, Path):
            writable_path(param, target)
    return value
