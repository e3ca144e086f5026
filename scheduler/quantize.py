"""Map combined scores to kube-scheduler's integer extender scores 0..10, keeping the ranking.

Rank-aware levels: start from the linear level ``round(10 * (v - min) / (max - min))``; walk the
distinct values from best to worst and give each at most one level below the previous distinct
value, and (with at most 11 distinct values) never so low that the values below run out of
levels. So the best node always gets 10 and no other node does unless it is truly equal (within
1e-9 relative); distinct values stay distinct until the 11 levels run out, and large gaps still
show as large level gaps where levels allow.
"""

from __future__ import annotations

import numpy as np

LEVELS = 10


def quantize(values: np.ndarray) -> np.ndarray:
    """Integer levels 0..10 for ``values`` (higher is better)."""
    v = np.asarray(values, dtype=np.float64)
    out = np.zeros(v.shape, dtype=np.int64)
    if v.size == 0:
        return out
    finite = np.isfinite(v)
    if not finite.any():
        return out
    vals = v[finite]
    hi, lo = float(vals.max()), float(vals.min())
    tol = 1e-9 * max(abs(hi), abs(lo), 1.0)
    if hi - lo <= tol:
        out[finite] = LEVELS
        return out
    # distinct values, best first; values within ``tol`` of the previous one count as equal
    # (one argsort gives both the distinct values and each value's index among them)
    order = np.argsort(vals)
    ascending = vals[order]
    starts = np.empty(ascending.size, dtype=bool)
    starts[0] = True
    np.not_equal(ascending[1:], ascending[:-1], out=starts[1:])
    desc = ascending[starts][::-1]
    pos = np.empty(vals.size, dtype=np.intp)  # index of each value in desc
    pos[order] = desc.size - np.cumsum(starts)
    group = np.concatenate(([0], np.cumsum(-np.diff(desc) > tol)))
    heads = desc[np.concatenate(([True], group[1:] != group[:-1]))]
    linear = np.rint(LEVELS * (heads - lo) / (hi - lo)).astype(np.int64)
    k = np.arange(heads.size, dtype=np.int64)
    # level_k = min(linear_k, level_{k-1} - 1), level_0 = 10  <=>  cummin(linear + k) - k;
    # with at most 11 distinct values, keep room below for each of them: level_k >= n - 1 - k
    floor = heads.size - 1 - k if heads.size <= LEVELS + 1 else np.zeros_like(k)
    head_levels = np.maximum(np.minimum.accumulate(linear + k) - k, floor)
    out[finite] = head_levels[group[pos]]
    return out


def quantize_cost(
    cost: np.ndarray, indifference: float = 0.02, full_scale: float = 1.0
) -> np.ndarray:
    """Integer levels 0..10 from costs (lower is better), by differences that matter.

    With ``best`` the least finite cost and ``d = (cost - best) / best``: nodes with
    ``d <= indifference`` get 10 (kube-scheduler's own plugins decide among them); others get
    ``round(10 * (1 - d / full_scale))`` clipped to 0..9, so noise never spans the range. Where
    the best cost is not positive, every finite node within ``indifference`` (absolute) of it
    gets 10 and the rest fall linearly over ``full_scale`` (absolute). NaN costs get 0.
    """
    c = np.asarray(cost, dtype=np.float64)
    out = np.zeros(c.shape, dtype=np.int64)
    finite = np.isfinite(c)
    if not finite.any():
        return out
    best = float(c[finite].min())
    scale = best if best > 0.0 else 1.0
    d = (c[finite] - best) / scale
    linear = np.clip(np.rint(LEVELS * (1.0 - d / full_scale)), 0, LEVELS - 1).astype(np.int64)
    out[finite] = np.where(d <= indifference, LEVELS, linear)
    return out


def nudge_top(levels: np.ndarray, order: np.ndarray) -> np.ndarray:
    """The one-level nudge among equals: of the nodes at level 10, those whose ``order`` (higher
    better, e.g. the GPU term's FGD preference) is below the best of them get 9.

    Costs within the indifference band are equal as far as the policy is concerned, but packing
    needs a stable order among them: answered as ties, kube-scheduler would pick one at random
    (or by its own resource plugins, which spread), scattering shared GPUs and breaking up whole
    nodes. One level (50 points at extender weight 5) is a nudge its plugins can still outvote.
    """
    out = np.asarray(levels, dtype=np.int64).copy()
    o = np.asarray(order, dtype=np.float64)
    top = (out == LEVELS) & np.isfinite(o)
    if top.sum() < 2:
        return out
    best = float(o[top].max())
    tol = 1e-9 * max(abs(best), 1.0)
    out[top & (o < best - tol)] = LEVELS - 1
    return out
