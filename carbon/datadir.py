"""Locate the shared datasets directory (never copied into the repo).

``LOWCARB_DATA`` wins; otherwise ``<repo>/../shared/data`` when it exists; otherwise None, and
callers (tests, the replay provider) skip or report clearly.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV_VAR = "LOWCARB_DATA"


def data_dir() -> Path | None:
    """The datasets root, or None when it is not available on this machine."""
    env = os.environ.get(ENV_VAR)
    if env:
        path = Path(env).expanduser()
        return path if path.is_dir() else None
    default = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
    return default if default.is_dir() else None
