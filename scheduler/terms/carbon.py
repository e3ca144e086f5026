"""Carbon term: expected emissions (gCO2e) of the pod on each candidate node.

energy = IT power of the pod on the node's GPU model (GPUs, fractions counted fractionally, plus
CPU and memory share) x PUE of the node's zone x expected duration on that node (the pod's expected
duration divided by the GPU model's relative speed); emissions = energy x the mean forecast
intensity of the node's zone over [now, now + duration] (the latest value where no forecast
exists). So a faster, more efficient GPU in a slightly dirtier zone can win. The work is done per
distinct (zone, GPU model) pair, not per node.
"""

from __future__ import annotations

import numpy as np

from carbon.energy import energy_kwh
from scheduler.terms.base import Context, Term, TermScore, lower_is_better, term


@term("carbon")
class Carbon(Term):
    def score(self, ctx: Context) -> TermScore:
        t, pod, power = ctx.table, ctx.pod, ctx.power
        n = len(t)
        raw = np.full(n, np.nan, dtype=np.float64)
        intensity = np.full(n, np.nan, dtype=np.float64)
        sources: dict[str, dict[str, object]] = {}
        if n == 0:
            return TermScore(raw=raw, normalized=raw.copy(), unit="gCO2e")
        kind = ctx.params.get("signal", "average")
        n_models = max(len(t.models), 1)
        pair = (t.zone.astype(np.int64) + 1) * n_models + t.gpu_model
        uniq, inverse = np.unique(pair, return_inverse=True)
        cores = pod.cpu_milli / 1000.0
        gib = pod.mem_bytes / 2**30
        for k, code in enumerate(uniq.tolist()):
            zone_idx, model_idx = divmod(code, n_models)
            zone_idx -= 1
            product = t.models[model_idx] if t.models else ""
            spec = power.gpu(product)
            speed = spec.relativeSpeed if pod.wants_gpu else 1.0
            duration = ctx.duration_s / speed
            zone = t.zones[zone_idx] if zone_idx >= 0 else None
            reading = (
                ctx.carbon.mean_intensity(zone, ctx.now_s, ctx.now_s + duration, kind)
                if zone is not None
                else None
            )
            rows = inverse == k
            if reading is None:
                continue
            if zone is not None and zone not in sources:
                sources[zone] = {
                    "source": reading.source,
                    "age_s": round(reading.age_s, 1),
                    "stale": reading.stale,
                    "g_per_kwh": round(reading.g_per_kwh, 1),
                }
            watts = power.it_watts(product, pod.gpu_fraction, cores, gib)
            kwh = energy_kwh(watts, power.pue_for(zone), duration)
            raw[rows] = kwh * reading.g_per_kwh
            intensity[rows] = reading.g_per_kwh
        known = np.isfinite(raw)
        if known.any() and not known.all():
            raw[~known] = float(np.mean(raw[known]))  # no data: neutral, neither best nor worst
        return TermScore(
            raw=raw,
            normalized=lower_is_better(raw),
            unit="gCO2e",
            detail={"intensity": intensity, "carbon_data": sources},
        )
