"""Permutation-invariant features whose distances lower-bound the aligned distance.

For one parameter tensor ``T`` and any hidden-neuron permutation ``pi`` of the spec,
each of these feature maps ``f`` satisfies ``||f(A) - f(B)|| <= ||A - pi(B)||``:

* the tensor's entries sorted (a permutation of axes permutes entries, and sorted
  order is the best L2 matching of two multisets);
* for every axis of a tensor with >= 2 axes, the L2 norms of its slices along that
  axis (``|‖a_i‖ - ‖b_i‖| <= ‖a_i - b_i‖``), sorted when the axis is permuted (its
  slices are permuted, their norms unchanged by the other axes' permutations), in
  place otherwise;
* a tensor with no permuted axis: its entries in place (exact).

Per tensor the largest of its bounds holds, and the squared distance sums over
tensors, so ``LB(a, b) = sqrt(sum_t max_f ||f_t(a) - f_t(b)||^2)`` lower-bounds the
distance after *any* permutation, hence after weight matching. The search
(:mod:`.search`) uses it to skip candidates that cannot be nearer than one already
aligned, and to certify that the pre-filtered result equals the exhaustive one.
"""
from __future__ import annotations

import torch

from ..space import WeightSpace
from .distances import chunk_rows, pairwise_sq_dists

__all__ = ["invariant_features", "lower_bound_sq", "lower_bound"]


def invariant_features(ws: WeightSpace, dtype: torch.dtype = torch.float64) -> list[list[torch.Tensor]]:
    """Per parameter, its list of invariant feature matrices ``[B, f]`` (see module doc)."""
    out: list[list[torch.Tensor]] = []
    B = len(ws)
    for p, t in zip(ws.spec.params, ws.tensors):
        t = t.detach().to(dtype)
        if all(g is None for g in p.axes):
            out.append([t.reshape(B, -1)])
            continue
        feats = [t.reshape(B, -1).sort(dim=1).values]
        if t.dim() > 2:  # slice norms along each axis
            for ax, g in enumerate(p.axes):
                dims = [d for d in range(1, t.dim()) if d != ax + 1]
                n = torch.linalg.vector_norm(t, dim=dims)  # [B, shape[ax]]
                feats.append(n.sort(dim=1).values if g is not None else n)
        out.append(feats)
    return out


def lower_bound_sq(
    feats_q: list[list[torch.Tensor]], feats_k: list[list[torch.Tensor]], rows: slice | None = None
) -> torch.Tensor:
    """``[Q, K]`` squared lower bounds between query rows (``rows`` of ``feats_q``) and all keys.

    The expansion ``‖a‖² + ‖b‖² - 2<a, b>`` rounds by about ``eps * (‖a‖² + ‖b‖²)`` times
    the vector length; that much is subtracted so that a bound never overshoots.
    """
    total, scale = None, None
    for fq, fk in zip(feats_q, feats_k):
        best = None
        for a, b in zip(fq, fk):
            a = a if rows is None else a[rows]
            d2 = pairwise_sq_dists(a, b)
            best = d2 if best is None else torch.maximum(best, d2)
            s = (a * a).sum(1, keepdim=True) + (b * b).sum(1).unsqueeze(0)
            s = s * (torch.finfo(a.dtype).eps * 4 * a.shape[1])
            scale = s if scale is None else scale + s
        total = best if total is None else total + best
    return (total - scale).clamp_min_(0.0)


def lower_bound(ws_q: WeightSpace, ws_k: WeightSpace) -> torch.Tensor:
    """``[Q, K]`` lower bounds on the permutation-aligned distance (float64)."""
    fq, fk = invariant_features(ws_q), invariant_features(ws_k)
    chunk = chunk_rows(len(ws_k))
    parts = [lower_bound_sq(fq, fk, slice(s, s + chunk)) for s in range(0, len(ws_q), chunk)]
    return torch.cat(parts).sqrt()
