"""FGD fragmentation: hand-checked cases and a per-node reference implementation."""

from __future__ import annotations

import numpy as np
import pytest

from scheduler.gpu.fragmentation import FragmentationModel, TaskShape, Workload, model_matches

MODELS = ["G2", "T4"]


def model_of(shapes: list[TaskShape], weights: list[float]) -> FragmentationModel:
    return FragmentationModel(Workload(tuple(shapes), tuple(weights)))


def frag(fm: FragmentationModel, free: list[int], cpu: int = 96_000, model: int = 0) -> float:
    return float(
        fm.node_frag(
            np.array([free], dtype=np.int32),
            np.array([cpu], dtype=np.int64),
            np.array([model], dtype=np.int32),
            MODELS,
        )[0]
    )


def test_slivers_below_a_tasks_demand_are_fragment() -> None:
    fm = model_of([TaskShape(0, 1, 1000), TaskShape(0, 1, 300)], [0.5, 0.5])
    # whole-GPU task: 500 + 200 unusable; 300-milli task: only the 200 sliver
    assert frag(fm, [1000, 500, 200]) == pytest.approx(0.5 * 700 + 0.5 * 200)


def test_a_task_that_cannot_run_counts_all_free_gpu() -> None:
    fm = model_of([TaskShape(16_000, 1, 1000, ("T4",)), TaskShape(0, 0, 0)], [0.5, 0.5])
    # wrong model for the GPU task, and CPU-only tasks always count the idle GPUs
    assert frag(fm, [1000, 1000], model=0) == pytest.approx(2000)
    assert frag(fm, [1000, 1000], model=1) == pytest.approx(0.5 * 2000)
    # right model but too little CPU left on the node
    assert frag(fm, [1000, 1000], cpu=8_000, model=1) == pytest.approx(2000)


def test_multi_gpu_task_needs_enough_fitting_gpus() -> None:
    fm = model_of([TaskShape(0, 2, 1000)], [1.0])
    assert frag(fm, [1000, 1000, 1000]) == pytest.approx(0)
    assert frag(fm, [1000, 900]) == pytest.approx(1900)


def test_sharing_pod_goes_to_the_gpu_that_fragments_least() -> None:
    fm = model_of([TaskShape(0, 1, 1000), TaskShape(0, 1, 300)], [0.5, 0.5])
    free = np.array([[1000, 500, 200], [1000, 1000, 1000]], dtype=np.int32)
    delta, choice = fm.placement_delta(
        free, np.full(2, 96_000, np.int64), np.zeros(2, np.int32), MODELS, 1, 300, 1000
    )
    # node 0: 300 on the 500 GPU leaves 200 + 200 slivers: 400 -> 400, on the whole GPU 800
    assert choice.tolist()[0] == 1
    assert delta[0] == pytest.approx(400 - 450)
    # node 1: any GPU, leaving a 700 sliver the whole-GPU task cannot use
    assert delta[1] == pytest.approx(0.5 * 700)
    assert choice[1] == 0


def test_rows_that_cannot_fit_get_inf() -> None:
    fm = model_of([TaskShape(0, 1, 1000)], [1.0])
    free = np.array([[500, 0], [1000, 1000]], dtype=np.int32)
    delta, choice = fm.placement_delta(
        free, np.full(2, 1000, np.int64), np.zeros(2, np.int32), MODELS, 2, 1000, 0
    )
    assert np.isinf(delta[0]) and choice[0] == -1
    assert delta[1] == pytest.approx(0) and choice[1] == 0


def reference(shapes: list[TaskShape], weights: list[float], free: np.ndarray, cpu: int, m: int):
    total = float(free.sum())
    out = 0.0
    for s, p in zip(shapes, weights, strict=True):
        if s.milli == 0:
            out += p * total
            continue
        ok = (not s.models or MODELS[m] in s.models) and cpu >= s.cpu_milli
        ok = ok and int((free >= s.milli).sum()) >= s.gpus
        out += p * (float(free[free < s.milli].sum()) if ok else total)
    return out


def test_vectorised_matches_a_per_node_reference() -> None:
    rng = np.random.default_rng(7)
    shapes = [
        TaskShape(0, 0, 0),
        TaskShape(12_000, 1, 1000),
        TaskShape(6_000, 1, 460),
        TaskShape(4_000, 1, 230),
        TaskShape(80_000, 8, 1000),
        TaskShape(30_000, 2, 1000, ("T4",)),
    ]
    weights = [0.1, 0.4, 0.2, 0.15, 0.05, 0.1]
    fm = model_of(shapes, weights)
    n = 300
    free = rng.choice([0, 1000, 540, 770, 230, 1000], size=(n, 8)).astype(np.int32)
    cpu = rng.integers(0, 96_000, n).astype(np.int64)
    model = rng.integers(0, 2, n).astype(np.int32)
    got = fm.node_frag(free, cpu, model, MODELS)
    want = [reference(shapes, weights, free[i], int(cpu[i]), int(model[i])) for i in range(n)]
    assert np.allclose(got, want)
    delta, choice = fm.placement_delta(free, cpu, model, MODELS, 1, 460, 6_000)
    for i in range(n):
        best = np.inf
        for g in range(8):
            if free[i, g] >= 460:
                after = free[i].copy()
                after[g] -= 460
                d = reference(shapes, weights, after, int(cpu[i]) - 6_000, int(model[i]))
                best = min(best, d - want[i])
        assert (np.isinf(best) and np.isinf(delta[i])) or delta[i] == pytest.approx(best)
        if np.isfinite(best):
            assert free[i, choice[i]] >= 460


def test_equal_shapes_give_bit_equal_values() -> None:
    fm = model_of(
        [TaskShape(0, 1, 1000), TaskShape(0, 1, 333), TaskShape(0, 0, 0)], [0.3, 0.3, 0.4]
    )
    free = np.array([[1000, 667, 0], [0, 667, 1000], [667, 0, 1000]], dtype=np.int32)
    values = fm.node_frag(free, np.full(3, 1000, np.int64), np.zeros(3, np.int32), MODELS)
    assert values[0] == values[1] == values[2]


@pytest.mark.parametrize(
    ("wanted", "product", "ok"),
    [
        ("A100", "NVIDIA-A100-SXM4-80GB", True),
        ("a100", "NVIDIA-A100-SXM4-80GB", True),
        ("A10", "NVIDIA-A100-SXM4-80GB", False),
        ("NVIDIA-L4", "NVIDIA-L4", True),
        ("T4", "Tesla-T4", True),
        ("T4", "", False),
    ],
)
def test_model_matching_by_token(wanted: str, product: str, ok: bool) -> None:
    assert model_matches(wanted, product) is ok


def test_workload_validation_names_the_problem() -> None:
    with pytest.raises(ValueError, match="same length"):
        Workload((TaskShape(0, 1, 1000),), ())
    with pytest.raises(ValueError, match="at least one"):
        Workload((), ())
