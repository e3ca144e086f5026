"""GPU fit term: feasibility with precise reasons, and fragmentation-aware placement scores.

Filter: GPU model (``nvidia.com/gpu.product`` against the pod's allowed models), memory per GPU,
whole free GPUs, milli on one GPU for a sharing pod, MIG bins. Score modes (per workload class,
its ``gpuMode``, :class:`GpuFitArgs`): ``fgd`` (default; least growth of the expected workload's
fragmentation, learned from recently seen pods), ``bestfit``, ``packing``, ``spread``. For every
node the term also names the GPU a sharing pod would use there (``detail["gpu_index"]``); the
service writes it to the pod (``lowcarb.dev/gpu-index``) at bind. Its filter runs for every class
(``always_filter``): a pod must fit whatever the class weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from pydantic import Field

from scheduler.cluster.table import NodeTable
from scheduler.demand import PodDemand
from scheduler.gpu import supply as gpu
from scheduler.gpu.fragmentation import FragmentationModel, Workload, model_matches
from scheduler.gpu.workload import WorkloadLearner
from scheduler.terms.base import Context, Term, TermArgs, TermScore, higher_is_better
from scheduler.terms.fgd_rows import FgdRows

Mode = Literal["fgd", "bestfit", "packing", "spread"]
MODES: tuple[Mode, ...] = ("fgd", "bestfit", "packing", "spread")
#: FGD compares fragmentation increases on the paper's 0..100 sigmoid score scale.
FGD_STEPS = 100.0
#: Weight, in FGD steps, of the stable node order that consolidates among near-equal nodes.
ORDER_STEPS = 12.0


def allowed_models(table: NodeTable, pod: PodDemand) -> gpu.BoolArray:
    """Nodes whose GPU model satisfies the pod's model constraint (all when it has none)."""
    if not pod.models:
        return np.ones(len(table), dtype=bool)
    ok = np.array(
        [any(model_matches(w, m) for w in pod.models) for m in table.models] + [False], dtype=bool
    )
    idx = np.where(
        (table.gpu_model >= 0) & (table.gpu_model < len(table.models)),
        table.gpu_model,
        len(table.models),
    )
    return ok[idx]


@dataclass(slots=True)
class Feasibility:
    """Per-check masks over the table rows (True: passes)."""

    model: gpu.BoolArray
    memory: gpu.BoolArray
    gpus: gpu.BoolArray
    mig: gpu.BoolArray

    @property
    def ok(self) -> gpu.BoolArray:
        return self.model & self.memory & self.gpus & self.mig


def feasibility(table: NodeTable, pod: PodDemand) -> Feasibility:
    """Vectorised GPU feasibility of ``pod`` on every row (no reasons; the hot path)."""
    n = len(table)
    yes = np.ones(n, dtype=bool)
    if not pod.wants_gpu:
        return Feasibility(yes, yes, yes, yes)
    model = allowed_models(table, pod)
    memory = table.gpu_mem_mib >= pod.min_gpu_mem_mib if pod.min_gpu_mem_mib else yes
    gpus = gpu.gpu_fit_mask(table.gpu_free, pod.gpus, pod.gpu_milli) if pod.gpus else yes
    mig = yes
    for profile, count in pod.mig.items():
        col = table.mig_profiles.index(profile) if profile in table.mig_profiles else -1
        have = table.mig_free[:, col] if col >= 0 else np.zeros(n, dtype=np.int32)
        mig = mig & (have >= count)
    return Feasibility(model, memory, gpus, mig)


def reason(table: NodeTable, pod: PodDemand, i: int, f: Feasibility) -> str:
    """Why row ``i`` cannot take ``pod`` (the first failing check), for FailedNodes."""
    if not f.model[i]:
        m = int(table.gpu_model[i])
        have = table.models[m] if 0 <= m < len(table.models) and table.models[m] else ""
        if int(table.gpu_total[i]) == 0 and not have:
            return f"needs model {'|'.join(pod.models)}, node has no GPUs"
        return f"needs model {'|'.join(pod.models)}, node has {have or 'an unlabelled GPU'}"
    if not f.memory[i]:
        return f"needs {pod.min_gpu_mem_mib} MiB per GPU, node has {int(table.gpu_mem_mib[i])} MiB"
    if not f.gpus[i]:
        total = int(table.gpu_total[i])
        if total == 0:
            return f"needs {pod.gpus} GPU{'s' if pod.gpus > 1 else ''}, node has no GPUs"
        if pod.shares_gpu:
            best = int(table.gpu_free[i].max())
            return f"needs {pod.gpu_milli} milli on one GPU, best GPU has {best} free"
        whole = int((table.gpu_free[i] >= gpu.MILLI).sum())
        return f"needs {pod.gpus} free GPUs, has {whole} of {total}"
    for profile, count in pod.mig.items():
        col = table.mig_profiles.index(profile) if profile in table.mig_profiles else -1
        bins = int(table.mig_free[i, col]) if col >= 0 else 0
        if bins < count:
            return f"needs {count} MIG {profile}, has {bins} free"
    return "GPU check failed"


def gpu_choice(table: NodeTable, pod: PodDemand, mode: Mode) -> gpu.IntArray:
    """GPU a sharing pod would use on each row in the non-FGD modes (-1: none / not sharing)."""
    n = len(table)
    if not pod.shares_gpu:
        return np.full(n, -1, dtype=np.int32)
    if mode == "spread":
        return gpu.worst_fit_gpu(table.gpu_free, pod.gpu_milli)
    return gpu.best_fit_gpu(table.gpu_free, pod.gpu_milli)


def fgd_preference(delta_milli: gpu.FloatArray, table: NodeTable) -> gpu.FloatArray:
    """Order nodes by FGD, consolidating among near-equal choices (higher is better).

    The fragmentation increase is compared on the FGD paper's score scale, the integer part of
    ``100 * sigmoid(-increase in GPUs)`` (a step is about 0.04 GPU near zero, wider for large
    changes). A fixed per-node order (crc32 of the name, in [0, 1)) is added with a weight of
    ``ORDER_STEPS`` steps: among nodes within that many steps of the best, the one earliest in
    the order wins. Always preferring the same nodes among near-equals consolidates load and
    keeps whole nodes (and nodes of scarce models) free for the pods that need them; on the
    openb trace this beats the paper's FGD, which only breaks exact score ties that way
    (``benchmarks/fragmentation.py``).
    """
    step = np.floor(FGD_STEPS / (1.0 + np.exp(np.clip(delta_milli / gpu.MILLI, -50.0, 50.0))))
    return np.asarray(step + ORDER_STEPS * table.name_order(), dtype=np.float64)


def score_rows(
    table: NodeTable,
    pod: PodDemand,
    mode: Mode,
    frag: FragmentationModel | None,
    remembered: FgdRows | None = None,
) -> TermScore:
    """Score every row of ``table`` (assumed feasible) for ``pod`` in ``mode``; ``remembered``
    keeps FGD deltas of cluster-state rows between cycles (:mod:`scheduler.terms.fgd_rows`)."""
    n = len(table)
    milli = pod.gpu_milli if pod.gpus else 0
    if mode == "fgd":
        if frag is None:
            raise ValueError("fgd mode needs a FragmentationModel")
        delta, choice = (remembered or FgdRows()).placement_delta(
            frag, table, pod.gpus, milli, pod.cpu_milli
        )
        raw = delta / gpu.MILLI  # GPUs of expected fragmentation added
        finite = np.isfinite(raw)
        pref = np.where(finite, fgd_preference(np.where(finite, delta, 0.0), table), np.nan)
        return TermScore(
            raw=raw,
            normalized=higher_is_better(pref, finite),
            unit="fragmented GPUs added",
            detail={"gpu_index": choice if pod.shares_gpu else np.full(n, -1, dtype=np.int32)},
        )
    if mode == "bestfit":  # CPU-only pods too: they belong where GPUs are used up
        raw = gpu.score_bestfit(table.gpu_free, table.cpu_free, pod.gpus, milli, pod.cpu_milli)
        return TermScore(
            raw=raw,
            normalized=higher_is_better(raw),
            unit="best-fit score (1 - CPU and GPU share left)",
            detail={"gpu_index": gpu_choice(table, pod, mode)},
        )
    if not pod.gpus:
        zeros = np.zeros(n, dtype=np.float64)
        return TermScore(raw=zeros, normalized=np.ones(n), unit="n/a (no GPU)")
    if mode == "packing":
        raw = gpu.score_packing(table.gpu_free, table.gpu_total, pod.gpus, milli)
        unit = "packing tier score"
    elif mode == "spread":
        raw = gpu.score_spread(table.gpu_free, pod.gpus, milli)
        unit = "free GPUs after"
    else:
        raise ValueError(f"unknown GPU score mode {mode!r}; use one of {', '.join(MODES)}")
    return TermScore(
        raw=raw,
        normalized=higher_is_better(raw),
        unit=unit,
        detail={"gpu_index": gpu_choice(table, pod, mode)},
    )


class GpuFitArgs(TermArgs):
    """The GPU term's settings in a workload class."""

    gpuMode: Mode = Field(
        default="fgd", description="How gpu_fit scores: fgd, bestfit, packing or spread"
    )


class GpuFit(Term[GpuFitArgs]):
    """GPU feasibility and placement score; learns the expected workload from observed pods.

    ``workload`` pins the expected workload (e.g. typical pods of a known trace) instead of
    learning it; ``window_pods``/``window_s``/``popularity`` configure the learner.
    """

    name = "gpu_fit"
    Args = GpuFitArgs
    always_filter = True

    def __init__(
        self,
        workload: Workload | None = None,
        window_pods: int = 5000,
        window_s: float | None = None,
        popularity: float = 0.95,
    ) -> None:
        self.fixed = workload
        self.learner = WorkloadLearner(
            window_pods=window_pods, window_s=window_s, popularity=popularity
        )
        self._model: FragmentationModel | None = None
        self._rows = FgdRows()

    def configure(
        self, window_pods: int = 5000, window_s: float | None = None, popularity: float = 0.95
    ) -> None:
        """Change the learner's window (pods and/or seconds) and popularity cut-off, keeping
        what it has seen (for a policy reload)."""
        learner = self.learner
        if (learner.window_pods, learner.window_s, learner.popularity) != (
            window_pods,
            window_s,
            popularity,
        ):
            self.learner = learner.reconfigured(window_pods, window_s, popularity)

    def fragmentation_model(self) -> FragmentationModel:
        """The FGD model of the current expected workload (rebuilt when the workload changes)."""
        current = self.fixed if self.fixed is not None else self.learner.workload()
        # a relearned workload equal to the last keeps its model (and the deltas remembered)
        if self._model is None or self._model.workload != current:
            self._model = FragmentationModel(current)
        return self._model

    def typical(self, *, fresh: bool = False) -> tuple[Workload, str, int]:
        """The expected workload FGD scores against, where it came from (``fixed``, ``learned``
        or ``default``: no pod seen yet) and how many pods it was learned from. ``fresh``: first
        bring it up to date with every pod seen (scoring does so every ``refresh_every`` pods)."""
        if self.fixed is not None:
            return self.fixed, "fixed", 0
        current = self.learner.refresh() if fresh else self.learner.workload()
        basis = self.learner.basis
        return current, "learned" if basis else "default", basis

    def summary(self, mode: str, top: int = 3) -> dict[str, Any]:
        """The expected workload for ``/explain``: source, pods learned from, shape count, the
        ``top`` most popular shapes and the class's ``mode`` (the workload matters in fgd)."""
        workload, source, pods = self.typical()
        ranked = sorted(
            zip(workload.shapes, workload.weights, strict=True),
            key=lambda sw: (-sw[1], sw[0].gpus, sw[0].milli, sw[0].cpu_milli, sw[0].models),
        )
        shapes = [
            {
                "gpus": shape.gpus,
                "gpu_milli": shape.milli,
                "cpu_milli": shape.cpu_milli,
                "models": list(shape.models),
                "weight": round(float(weight), 4),
            }
            for shape, weight in ranked[:top]
        ]
        return {
            "source": source,
            "pods": pods,
            "shapes": len(workload.shapes),
            "top": shapes,
            "gpu_mode": mode,
        }

    def filter(self, ctx: Context, args: GpuFitArgs) -> tuple[np.ndarray | None, dict[int, str]]:
        pod, table = ctx.pod, ctx.table
        if not pod.wants_gpu:
            return None, {}
        f = feasibility(table, pod)
        ok = f.ok
        reasons = table.explain(np.flatnonzero(~ok), lambda i: reason(table, pod, i, f))
        return ok, reasons

    def score(self, ctx: Context, args: GpuFitArgs) -> TermScore:
        mode = args.gpuMode
        frag = self.fragmentation_model() if mode == "fgd" else None
        return score_rows(ctx.table, ctx.pod, mode, frag, self._rows)

    def observe(self, pod: PodDemand) -> None:
        self.learner.observe(pod)
