"""The live policy: loaded once, hot-reloaded from its file, last good one kept on a bad edit.

Polls the file's bytes (works with a mounted ConfigMap's ``..data`` symlink swap, where mtimes
and inotify events are unreliable). A file that fails validation never replaces the good policy:
every error (file:line:column: field path: message) is logged and ``lowcarb_policy_reload_failed``
is set to 1 until a good file lands. A file that is invalid at start-up stops the start with the
same messages: there is no last good policy to keep yet.

The store is generic over what it compiles a policy into (``build``): the scoring engine passes
its :class:`~scheduler.engine.Engine` (see :class:`scheduler.engine.EngineStore`), so the policy
layer never imports the layers above it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Generic, TypeVar

import structlog

from scheduler import metrics
from scheduler.policy.model import DEFAULT_POLICY, Policy
from scheduler.policy.validate import PolicyError, lint_text, load_policy, policy_from_text

log = structlog.get_logger("lowcarb.policy")

C = TypeVar("C")
# Compiles a policy; gets the previous compiled value on a reload (so what it learned survives).
Build = Callable[[Policy, C | None], C]


class PolicyStore(Generic[C]):
    """Holds the current policy and what it compiles to; ``engine()`` is what each request reads."""

    def __init__(self, path: Path | str | None, build: Build[C], *, warn: bool = True) -> None:
        """``warn``: log what ``lowcarb policy validate`` warns about, at load and each reload."""
        self.path = Path(path) if path is not None else None
        self._build = build
        self._warns = warn
        source = self.path or DEFAULT_POLICY
        self._digest = hashlib.sha256(source.read_bytes()).digest()
        self._policy = load_policy(source)
        self._engine = build(self._policy, None)
        if self.path is not None:
            self._warn(self.path.read_bytes())
        self.last_error: str | None = None
        self._listeners: list[Callable[[Policy], None]] = []
        self._task: asyncio.Task[None] | None = None

    @property
    def policy(self) -> Policy:
        return self._policy

    def engine(self) -> C:
        return self._engine

    def on_change(self, listener: Callable[[Policy], None]) -> None:
        self._listeners.append(listener)

    def reload(self) -> bool:
        """Re-read the file; swap in the new policy if it changed and is valid. True if swapped."""
        if self.path is None:
            return False
        try:
            data = self.path.read_bytes()
        except OSError as exc:
            return self._failed(f"{self.path}: cannot read: {exc}")
        digest = hashlib.sha256(data).digest()
        if digest == self._digest:
            return False
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            self._digest = digest
            return self._failed(
                f"{self.path}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset "
                f"{exc.start}); save the policy as UTF-8"
            )
        try:
            policy = policy_from_text(text, str(self.path))
            engine = self._build(policy, self._engine)
        except PolicyError as exc:
            self._digest = digest
            return self._failed(str(exc), [str(i) for i in exc.issues])
        except Exception as exc:  # a term that fails to build, ...
            self._digest = digest
            return self._failed(f"{self.path}: {type(exc).__name__}: {exc}")
        self._digest = digest
        self._policy, self._engine = policy, engine
        self.last_error = None
        metrics.POLICY_RELOAD_FAILED.set(0)
        metrics.POLICY_RELOADS.labels("ok").inc()
        log.info("policy reloaded", path=str(self.path))
        self._warn(data)
        for listener in self._listeners:
            listener(policy)
        return True

    def _warn(self, data: bytes) -> None:
        """Log what ``lowcarb policy validate`` would warn about (the policy is used anyway)."""
        if not self._warns:
            return
        warnings = lint_text(data.decode("utf-8"), str(self.path or DEFAULT_POLICY))
        if warnings:
            log.warning("policy warnings", path=str(self.path), warnings=[str(w) for w in warnings])

    def _failed(self, message: str, errors: list[str] | None = None) -> bool:
        self.last_error = message
        metrics.POLICY_RELOAD_FAILED.set(1)
        metrics.POLICY_RELOADS.labels("invalid").inc()
        log.error(
            "policy reload rejected; keeping the last good policy",
            path=str(self.path),
            errors=errors or [message],
        )
        return False

    async def watch(self, interval_s: float = 2.0) -> None:
        while True:
            await asyncio.sleep(interval_s)
            self.reload()

    def start(self, interval_s: float = 2.0) -> None:
        if self.path is not None and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self.watch(interval_s))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
