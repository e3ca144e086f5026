"""Base of the HTTP providers: one httpx client per instance, error classification, API helpers.

:class:`HttpProvider` holds what every HTTP provider repeated: the base URL (policy ``url``, else
the type's ``LOWCARB_*_URL`` environment variable, else its public default), the per-call timeout,
headers, the client and ``aclose``. :class:`HttpClient` turns statuses, timeouts and bodies into
classified :class:`~carbon.providers.base.ProviderError`\\ s (``Retry-After`` honoured).
"""

from __future__ import annotations

import email.utils
import os
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar

import httpx

from carbon.clock import wall
from carbon.providers.base import ErrorKind, ProviderBase, ProviderError, ProviderSettings


def parse_time(value: Any, *, provider: str, field: str) -> datetime:
    """ISO-8601 timestamp from an API ("Z", "+00:00", no seconds, milliseconds) -> aware UTC."""
    if not isinstance(value, str):
        raise ProviderError(
            "bad_response", f"{field} is not a timestamp: {value!r}", provider=provider
        )
    text = value.strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ProviderError(
            "bad_response", f"{field} is not ISO-8601: {value!r}", provider=provider
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def number(value: Any, *, provider: str, field: str, zone: str | None = None) -> float:
    """A numeric field from an API, or a bad_response error naming the field."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ProviderError(
            "bad_response", f"{field} is not a number: {value!r}", provider=provider, zone=zone
        )
    return float(value)


def iso(dt: datetime) -> str:
    """UTC timestamp as the APIs expect it: ``2023-06-14T12:00:00Z``."""
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def env_or(config_value: str | None, env_name: str, default: str) -> str:
    """Config value, else environment variable, else default (base URLs)."""
    if config_value:
        return config_value
    return os.environ.get(env_name) or default


def secret(env_name: str | None, default_env: str) -> str | None:
    """A credential read from the environment variable named in config (or the default name)."""
    value = os.environ.get(env_name or default_env)
    return value or None


def _retry_after(value: str | None, now: float) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now)


def _message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict):
            return str(err.get("message") or err.get("code") or body)[:300]
        parts = [str(body[k]) for k in ("error", "message", "msg", "title", "detail") if k in body]
        if parts:
            return ": ".join(parts)[:300]
    return str(body)[:300]


Classify = Callable[[httpx.Response, str], ErrorKind | None]
"""A provider's own reading of an error answer (None: the generic status mapping)."""


class HttpClient:
    """httpx.AsyncClient wrapper: base URL, timeout, headers, and error classification."""

    def __init__(
        self,
        provider_name: str,
        base_url: str,
        *,
        timeout: float,
        headers: Mapping[str, str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = wall,
        classify: Classify | None = None,
    ) -> None:
        self.provider = provider_name
        self.clock = clock
        self._classify = classify
        self.client = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            timeout=httpx.Timeout(timeout),
            headers=dict(headers or {}),
            transport=transport,
            follow_redirects=False,
        )

    async def aclose(self) -> None:
        """Close the underlying connection pool."""
        await self.client.aclose()

    async def get_json(
        self,
        path: str,
        *,
        params: Any = None,
        headers: Mapping[str, str] | None = None,
        zone: str | None = None,
        auth: httpx.Auth | None = None,
    ) -> Any:
        """GET ``path`` and decode JSON; None for 204; raises a classified ProviderError."""
        try:
            if auth is not None:
                response = await self.client.get(path, params=params, headers=headers, auth=auth)
            else:
                response = await self.client.get(path, params=params, headers=headers)
        except httpx.TimeoutException as exc:
            raise ProviderError(
                "timeout",
                f"no answer from {path}: {type(exc).__name__}",
                provider=self.provider,
                zone=zone,
            ) from None
        except httpx.HTTPError as exc:
            raise ProviderError(
                "network", f"{path}: {type(exc).__name__}: {exc}", provider=self.provider, zone=zone
            ) from None
        return self.decode(response, path, zone=zone)

    def decode(self, response: httpx.Response, path: str, *, zone: str | None = None) -> Any:
        """Classify the status and return the decoded JSON body."""
        status = response.status_code
        if status == 204:
            return None
        if status >= 400:
            msg = _message(response)
            kind: ErrorKind | None = self._classify(response, msg) if self._classify else None
            retry = _retry_after(response.headers.get("Retry-After"), self.clock())
            if kind is None:
                if status == 429:
                    kind = "rate_limited"
                elif status in (401, 403):
                    kind = "auth"
                elif status >= 500:
                    kind = "server"
                elif status == 404 and zone is not None:
                    kind = "unknown_zone"
                else:
                    kind = "client"
            raise ProviderError(
                kind,
                f"{path}: {msg}",
                provider=self.provider,
                zone=zone,
                status=status,
                retry_after=retry,
            )
        try:
            return response.json()
        except ValueError:
            ctype = response.headers.get("content-type", "?")
            raise ProviderError(
                "bad_response",
                f"{path}: body is not JSON (content-type {ctype}): {response.text[:80]!r}",
                provider=self.provider,
                zone=zone,
                status=status,
            ) from None


class HttpProvider(ProviderBase):
    """A provider answered by one HTTP API: builds ``self.http`` and closes it.

    A subclass sets ``URL_ENV`` and ``DEFAULT_URL`` (empty for a self-hosted API: the URL is then
    required, and ``SELF_HOSTED`` says what it points at), and may override :meth:`headers`
    (credentials) and :meth:`classify` (API-specific error answers).
    """

    URL_ENV: ClassVar[str] = ""
    DEFAULT_URL: ClassVar[str] = ""
    SELF_HOSTED: ClassVar[str] = "the API's base URL"

    def __init__(
        self,
        config: ProviderSettings,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = wall,
    ) -> None:
        super().__init__(config, transport=transport, clock=clock)
        base_url = env_or(config.url, self.URL_ENV, self.DEFAULT_URL)
        if not base_url:  # a self-hosted API has no public default
            raise ValueError(
                f"provider {config.name!r} ({config.type}): set its url in the policy or "
                f"{self.URL_ENV} to {self.SELF_HOSTED}"
            )
        self.http = HttpClient(
            config.name,
            base_url,
            timeout=config.timeout,
            headers=self.headers(),
            transport=transport,
            clock=clock,
            classify=self.classify,
        )

    def headers(self) -> dict[str, str]:
        """Headers sent with every request (e.g. an API token read from the environment)."""
        return {}

    def classify(self, response: httpx.Response, message: str) -> ErrorKind | None:
        """This API's reading of an error answer; None leaves the generic status mapping."""
        return None

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self.http.aclose()
