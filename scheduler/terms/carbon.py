"""Carbon term: expected emissions (gCO2e) of the pod on each candidate node.

For a node with GPU model ``m`` in grid zone ``z`` and region ``r``::

    run_s    = expected duration / relativeSpeed(m)          (GPU pods; CPU pods: speed 1)
    it_W     = watts(m) x GPUs + cpuWattsPerCore x cores + memoryWattsPerGiB x GiB
    kWh      = it_W x PUE(r, z) x run_s / 3.6e6
    gCO2e    = kWh x mean forecast intensity of z over [now, now + run_s]

GPUs count fractionally: a shared-GPU pod asking 300 milli counts 0.3 GPU, a MIG slice its share of
the 7 compute slices (``1g.10gb`` = 1/7). The forecast mean falls back to the latest value where no
forecast covers the run (the carbon cache decides; scoring never waits on it). The cost model
(:func:`scheduler.scoring.price`) prices ``raw``; the detail carries the arithmetic per row
(intensity, run hours, GPU watts, PUE, kWh at that PUE) for
``/explain`` and the energy price. ``normalized`` (least emissions 1, most 0 over the candidates)
is only read by the simulator's carbon-greedy baseline. No per-class settings. A node whose
zone no carbon source knows (``unknown_zone``) or that has no zone (``no_zone``) keeps
raw NaN and is scored neutral: as the mean emissions of the candidates with data, so it is neither
the best nor the worst carbon choice and the other terms decide; the decision notes name the reason.
A class asking for the ``marginal`` signal that is served average intensity gets an
``average_for_marginal`` note. The work is one carbon lookup per distinct (zone, GPU model) pair,
not per node.
"""

from __future__ import annotations

import re

import numpy as np

from carbon.energy import PowerModel, energy_kwh
from carbon.gaps import NEUTRAL, average_for_marginal_note, no_zone_note, unknown_zones_note
from scheduler.cluster.table import NodeTable, distinct_codes
from scheduler.demand import PodDemand
from scheduler.terms.base import Context, Term, TermArgs, TermScore, ZoneData, lower_is_better

MIG_SLICES = 7  # compute slices of an A100/H100/H200 in MIG mode
_MIG_G = re.compile(r"^(\d+)g\.")


def gpu_share(pod: PodDemand) -> float:
    """GPUs the pod occupies: whole GPUs, a shared fraction, or its MIG slices' share."""
    share = pod.gpu_fraction
    for profile, count in pod.mig.items():
        match = _MIG_G.match(profile)
        slices = int(match.group(1)) if match else 1
        share += count * min(slices, MIG_SLICES) / MIG_SLICES
    return share


def site_pue(t: NodeTable, power: PowerModel) -> np.ndarray:
    """PUE per row: ``pueByRegion`` for the node's region, else ``pueByZone``, else ``pue``."""
    by_zone = np.array([power.pue_for(z) for z in t.zones] + [power.pue], dtype=np.float64)
    pue = by_zone[np.where(t.zone >= 0, t.zone, len(t.zones))]
    if power.pueByRegion:
        regional = power.pueByRegion
        rows = [i for i, r in enumerate(t.region) if r in regional]
        if rows:
            pue[rows] = [regional[t.region[i]] for i in rows]
    return pue


class Carbon(Term[TermArgs]):
    """Expected emissions per node; the power model's per-GPU constants are read once per
    policy (the instance outlives a reload, so they are keyed by the power model itself)."""

    name = "carbon"

    # (the power model, product -> (relativeSpeed, watts)): one object, swapped atomically
    _gpu_consts: tuple[PowerModel | None, dict[str, tuple[float, float]]] = (None, {})

    def _consts(self, power: PowerModel, product: str) -> tuple[float, float]:
        """``(relativeSpeed, watts)`` of ``product`` under ``power``."""
        owner, consts = self._gpu_consts
        if owner is not power:
            consts = {}
            self._gpu_consts = (power, consts)
        hit = consts.get(product)
        if hit is None:
            entry = power.gpu(product)
            hit = consts[product] = (entry.relativeSpeed, entry.watts)
        return hit

    def score(self, ctx: Context, args: TermArgs) -> TermScore:
        t, pod, power = ctx.table, ctx.pod, ctx.power
        n = len(t)
        sources: dict[str, ZoneData] = {}
        if n == 0:
            empty = np.full(0, np.nan, dtype=np.float64)
            return TermScore(raw=empty, normalized=empty.copy(), unit="gCO2e")
        kind = ctx.signal
        gpus = gpu_share(pod)
        cores = pod.cpu_milli / 1000.0
        gib = pod.mem_bytes / 2**30
        n_models = max(len(t.models), 1)
        pair = (t.zone.astype(np.int64) + 1) * n_models + t.gpu_model
        uniq, inverse = distinct_codes(pair)
        # one carbon lookup per distinct (zone, GPU model): gCO2e at PUE 1, and the intensity
        grams = np.full(len(uniq), np.nan, dtype=np.float64)
        g_kwh = np.full(len(uniq), np.nan, dtype=np.float64)
        run_h = np.full(len(uniq), ctx.duration_s / 3600.0, dtype=np.float64)
        kwh = np.full(len(uniq), np.nan, dtype=np.float64)  # at PUE 1
        watts_gpu = np.zeros(len(uniq), dtype=np.float64)
        missing: list[str] = []
        averaged: dict[str, str] = {}  # zone -> source, where marginal was asked, average served
        # it_watts = GPU watts x GPUs + CPU watts + memory watts, summed in that order
        cpu_w = power.cpuWattsPerCore * cores
        mem_w = power.memoryWattsPerGiB * gib
        wants_gpu = pod.wants_gpu
        for k, code in enumerate(uniq.tolist()):
            zone_idx, model_idx = divmod(code, n_models)
            product = t.models[model_idx] if t.models else ""
            speed, gpu_watts = self._consts(power, product)
            if not wants_gpu:
                speed = 1.0
            duration = ctx.duration_s / speed
            run_h[k] = duration / 3600.0
            watts = gpu_watts * gpus + cpu_w + mem_w
            kwh[k] = energy_kwh(watts, 1.0, duration)
            watts_gpu[k] = gpu_watts if wants_gpu else 0.0
            if zone_idx == 0:
                continue  # node without a grid zone: energy known, emissions not
            zone = t.zones[zone_idx - 1]
            reading = ctx.carbon.mean_intensity(zone, ctx.now_s, ctx.now_s + duration, kind)
            if reading is None:
                missing.append(zone)
                continue
            if kind == "marginal" and reading.kind != "marginal":
                averaged[zone] = reading.source
            if zone not in sources:
                sources[zone] = ZoneData(
                    source=reading.source,
                    age_s=round(reading.age_s, 1),
                    stale=reading.stale,
                    g_per_kwh=round(reading.g_per_kwh, 1),
                )
            grams[k] = kwh[k] * reading.g_per_kwh
            g_kwh[k] = reading.g_per_kwh
        # PUE per row: by region label, else by zone, else the default
        pue = site_pue(t, power)
        raw = grams[inverse] * pue
        intensity = g_kwh[inverse]
        known = np.isfinite(raw)
        if not known.all():
            no_zone = int((t.zone < 0).sum())
            parts = [unknown_zones_note(missing)] if missing else []
            if no_zone:
                parts.append(no_zone_note(no_zone))
            note = "; ".join(parts) + f": {NEUTRAL}"
            if note not in pod.notes:
                pod.notes.append(note)
        if averaged:
            note = average_for_marginal_note(averaged, averaged.values())
            if note not in pod.notes:
                pod.notes.append(note)
        filled = raw
        if known.any() and not known.all():
            filled = raw.copy()
            filled[~known] = float(np.mean(raw[known]))
        return TermScore(
            raw=raw,
            normalized=lower_is_better(filled),
            unit="gCO2e",
            detail={
                "intensity": intensity,
                "run_h": run_h[inverse],
                "gpu_watts": watts_gpu[inverse],
                "pue": pue,
                "kwh": kwh[inverse] * pue,
            },
            carbon_data=sources,
        )
