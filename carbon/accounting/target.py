"""Where a ledger lives: a ``--ledger`` value read as a SQLite file or a PostgreSQL URL.

A value starting with ``postgresql://`` (or ``postgres://``) is a PostgreSQL connection URL, any
other scheme (``mysql://``) an error, everything else a file path. Messages and reports name a
ledger by :func:`describe_target`, which never shows a password.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from carbon.accounting.records import LedgerError

LedgerTarget = Path | str  # a SQLite file, or a postgresql:// URL
SCHEMES = ("postgresql://", "postgres://")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


def is_url(target: object) -> bool:
    """True for a ``postgresql://`` (or ``postgres://``) connection URL."""
    return isinstance(target, str) and target.lower().startswith(SCHEMES)


def parse_target(text: str | Path) -> LedgerTarget:
    """A ``--ledger`` value: a PostgreSQL URL as given, anything else a file path.

    Raises :class:`LedgerError` for a URL of another database (``mysql://...``).
    """
    if isinstance(text, Path) or is_url(text):
        return text
    scheme = _SCHEME.match(text)
    if scheme:
        raise LedgerError(
            f"ledger {redact(text)}: unknown scheme {scheme.group(1)!r}; give a file path "
            "(SQLite) or postgresql://USER@HOST/DATABASE"
        )
    return Path(text)


def redact(url: str) -> str:
    """The URL with its password (in the user part or a ``password=`` parameter) as ``***``."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        user, host = netloc.rsplit("@", 1)
        if ":" in user:
            user = user.split(":", 1)[0] + ":***"
        netloc = f"{user}@{host}"
    query = "&".join(
        "password=***" if kv.lower().startswith("password=") else kv
        for kv in parts.query.split("&")
        if kv
    )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def describe_target(target: LedgerTarget) -> str:
    """How messages and reports name a ledger (a URL without its password)."""
    return redact(target) if isinstance(target, str) and is_url(target) else str(target)
