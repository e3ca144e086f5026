"""Measured energy of a pod from Prometheus: ``increase()`` of a joule counter over its run.

Kepler's ``kepler_container_joules_total`` (the whole pod) or DCGM's
``DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION`` (the GPUs, in millijoules; the power model adds CPU and
memory), queried through the HTTP API (``/api/v1/query``) at the end of the run. The accountant
falls back to the power model when Prometheus has no series or does not answer.
"""

from __future__ import annotations

import math
from typing import Literal

import httpx

from carbon.accounting.emissions import MeasuredEnergy
from carbon.accounting.settings import PrometheusConfig


def _promql_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


_METER_DEFAULTS = {
    # source: (metric, namespace label, pod label, unit -> joules)
    "kepler": ("kepler_container_joules_total", "container_namespace", "pod_name", 1.0),
    "dcgm": ("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", "namespace", "pod", 1e-3),  # mJ
}


class PrometheusMeter:
    """Reads a pod's energy over its run from Prometheus (``increase()`` of a joule counter)."""

    def __init__(self, config: PrometheusConfig, client: httpx.AsyncClient | None = None) -> None:
        self.config = config
        metric, ns_label, pod_label, self._scale = _METER_DEFAULTS[config.source]
        self._metric = config.metric or metric
        self._ns_label = config.namespace_label or ns_label
        self._pod_label = config.pod_label or pod_label
        self._client = client or httpx.AsyncClient(timeout=config.timeout)
        self._own_client = client is None

    async def aclose(self) -> None:
        if self._own_client:
            await self._client.aclose()

    def query(self, namespace: str, name: str, seconds: float) -> str:
        """The PromQL expression for the pod's counter increase over its run."""
        selector = (
            f"{self._ns_label}={_promql_string(namespace)},{self._pod_label}={_promql_string(name)}"
        )
        window = max(math.ceil(seconds), 1)
        return f"sum(increase({self._metric}{{{selector}}}[{window}s]))"

    async def energy(
        self, namespace: str, name: str, start: float, end: float
    ) -> MeasuredEnergy | None:
        """Joules of the pod over [start, end), or None when Prometheus has no such series."""
        params = {"query": self.query(namespace, name, end - start), "time": f"{end:.3f}"}
        resp = await self._client.get(f"{self.config.url}/api/v1/query", params=params)
        resp.raise_for_status()
        body = resp.json()
        if body.get("status") != "success":
            raise httpx.HTTPError(f"prometheus: {body.get('errorType')}: {body.get('error')}")
        result = body.get("data", {}).get("result", [])
        if not result:
            return None
        value = float(result[0]["value"][1])
        if not math.isfinite(value) or value < 0:
            return None
        method: Literal["kepler", "dcgm+model"] = (
            "kepler" if self.config.source == "kepler" else "dcgm+model"
        )
        return MeasuredEnergy(joules=value * self._scale, method=method)
