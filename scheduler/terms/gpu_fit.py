"""GPU fit term (v1): feasibility by free GPUs, best fit by the GPUs left free after placement.

The fragmentation-aware version (FGD) replaces the scoring; the filter's reasons stay.
"""

from __future__ import annotations

import numpy as np

from scheduler.terms.base import Context, Term, TermScore, lower_is_better, term


@term("gpu_fit")
class GpuFit(Term):
    def filter(self, ctx: Context) -> tuple[np.ndarray | None, dict[int, str]]:
        pod, t = ctx.pod, ctx.table
        if not pod.wants_gpu:
            return None, {}
        n = len(t)
        ok = np.ones(n, dtype=bool)
        reasons: dict[int, str] = {}
        if pod.models:
            wanted = [m.lower() for m in pod.models]
            model_ok = np.array([any(w in m.lower() for w in wanted) for m in t.models], dtype=bool)
            bad = ~model_ok[t.gpu_model] if len(t.models) else np.ones(n, dtype=bool)
            for i in np.flatnonzero(bad & ok).tolist():
                have = t.models[t.gpu_model[i]] or "no GPU model label"
                reasons[i] = f"needs model {'|'.join(pod.models)}, node has {have}"
            ok &= ~bad
        if pod.min_gpu_mem_mib:
            bad = t.gpu_mem_mib < pod.min_gpu_mem_mib
            for i in np.flatnonzero(bad & ok).tolist():
                reasons[i] = (
                    f"needs {pod.min_gpu_mem_mib} MiB per GPU, node has {int(t.gpu_mem_mib[i])} MiB"
                )
            ok &= ~bad
        if pod.gpus:
            if pod.shares_gpu:
                best = t.gpu_free.max(axis=1)
                bad = best < pod.gpu_milli
                for i in np.flatnonzero(bad & ok).tolist():
                    reasons[i] = (
                        f"needs {pod.gpu_milli} milli on one GPU, best GPU has {int(best[i])} free"
                    )
            else:
                whole = (t.gpu_free >= 1000).sum(axis=1)
                bad = whole < pod.gpus
                for i in np.flatnonzero(bad & ok).tolist():
                    reasons[i] = (
                        f"needs {pod.gpus} free GPUs, has {int(whole[i])} of {int(t.gpu_total[i])}"
                    )
            ok &= ~bad
        for profile, count in pod.mig.items():
            col = t.mig_profiles.index(profile) if profile in t.mig_profiles else -1
            have = t.mig_free[:, col] if col >= 0 else np.zeros(n, dtype=np.int32)
            bad = have < count
            for i in np.flatnonzero(bad & ok).tolist():
                reasons[i] = f"needs {count} MIG {profile}, has {int(have[i])} free"
            ok &= ~bad
        return ok, reasons

    def score(self, ctx: Context) -> TermScore:
        pod, t = ctx.pod, ctx.table
        left = t.gpu_free.sum(axis=1).astype(np.float64) / 1000.0 - pod.gpu_fraction
        return TermScore(raw=left, normalized=lower_is_better(left), unit="free GPUs after")
