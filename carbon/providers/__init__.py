"""Carbon-intensity providers: the protocol, the registry, and one module per built-in provider.

Importing this package registers every built-in provider type; third-party types come from the
``lowcarb.carbon_providers`` entry-point group (see :func:`carbon.providers.base.registry`).
"""

from carbon.providers import (  # noqa: F401  (imported for their @provider registration)
    carbonaware,
    electricitymaps,
    replay,
    static,
    ukgrid,
    watttime,
)
from carbon.providers.base import (
    PartialFailure,
    Provider,
    ProviderError,
    create_provider,
    known_types,
    provider,
    registry,
)

__all__ = [
    "PartialFailure",
    "Provider",
    "ProviderError",
    "create_provider",
    "known_types",
    "provider",
    "registry",
]
