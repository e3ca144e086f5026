"""Failures talking to the API server, and the ``metav1.Status`` body they are read from.

:class:`KubeError` is the base of everything the kube package raises: :class:`ApiUnavailable`
(no answer: retry with backoff), :class:`ApiError` (an error ``Status``), :class:`Expired` (a
resourceVersion or continue token too old: relist).
"""

from __future__ import annotations

import ssl

import aiohttp
import msgspec


class StatusDetails(msgspec.Struct, omit_defaults=True):
    name: str = ""
    kind: str = ""


class ListMeta(msgspec.Struct, omit_defaults=True, rename={"continue_": "continue"}):
    resourceVersion: str = ""
    continue_: str = ""
    remainingItemCount: int | None = None


class Status(msgspec.Struct, omit_defaults=True):
    """``metav1.Status``: every error body, the Binding answer and watch ``ERROR`` objects."""

    kind: str = ""
    status: str = ""
    message: str = ""
    reason: str = ""
    code: int = 0
    details: StatusDetails | None = None
    metadata: ListMeta | None = None


_status_decoder = msgspec.json.Decoder(Status)


class KubeError(Exception):
    """Any failure talking to the API server."""


class ApiUnavailable(KubeError):
    """The API server could not be reached or the connection broke (retry with backoff)."""


class ApiError(KubeError):
    """The API server answered with an error ``Status``."""

    def __init__(self, code: int, status: Status, method: str = "", path: str = "") -> None:
        self.code = code
        self.status = status
        self.method = method
        self.path = path
        super().__init__(self.describe())

    @property
    def reason(self) -> str:
        return self.status.reason

    def describe(self) -> str:
        reason = self.status.reason or "Error"
        message = self.status.message or "(no message)"
        return f"{self.code} {reason}: {message}"


class Expired(KubeError):
    """A resourceVersion or continue token is too old: relist from scratch."""


def decode_status(code: int, body: bytes) -> Status:
    """The ``Status`` of an error answer; a body that is not one becomes its first 200 bytes."""
    try:
        return _status_decoder.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError):
        text = body[:200].decode("utf-8", "replace").strip()
        return Status(status="Failure", message=text or "(empty body)", code=code)


def unreachable(exc: BaseException) -> str:
    """Why a request got no answer, in lowcarb's words; the transport's own text follows in
    parentheses for the log, as its wording is no contract."""
    detail = f"({type(exc).__name__}: {exc})"
    cause: BaseException | None = exc
    untrusted = ssl.SSLCertVerificationError | aiohttp.ClientConnectorCertificateError
    while cause is not None:  # aiohttp wraps ssl's error (or keeps it beside)
        if isinstance(cause, untrusted):
            return (
                "TLS: the API server's certificate is not trusted by the kubeconfig's "
                f"certificate-authority, or does not name its host {detail}"
            )
        cause = cause.__cause__ or cause.__context__
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return f"timed out connecting {detail}"
    if isinstance(exc, TimeoutError):
        return f"timed out waiting for the answer {detail}"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"cannot connect {detail}"
    return f"connection failed {detail}"
