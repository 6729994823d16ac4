"""Raw (unaligned) L2 distances between two populations, in chunked matrix products.

``||a - b||^2 = ||a||^2 + ||b||^2 - 2 <a, b>``: one ``[chunk, D] @ [D, N]`` product per
chunk of queries, so 1,000 x 10,000 distances never materialize a ``[G, N, D]`` tensor.
The expansion loses precision for near-identical vectors, so the distance to the
chosen nearest neighbour is recomputed exactly from the difference.
"""
from __future__ import annotations

from typing import Callable, Iterator

import torch

__all__ = ["pairwise_sq_dists", "iter_sq_dists", "nearest_raw", "chunk_rows"]


def chunk_rows(n_cols: int, budget: int = 8_000_000) -> int:
    """Rows per chunk so that a ``[rows, n_cols]`` block stays under ``budget`` entries."""
    return max(1, min(4096, budget // max(1, n_cols)))


def pairwise_sq_dists(a: torch.Tensor, b: torch.Tensor, b_sq: torch.Tensor | None = None) -> torch.Tensor:
    """``[A, B]`` squared L2 distances between the rows of ``a [A, D]`` and ``b [B, D]`` (>= 0)."""
    a_sq = (a * a).sum(1, keepdim=True)
    b_sq = (b * b).sum(1) if b_sq is None else b_sq
    return (a_sq + b_sq.unsqueeze(0) - 2.0 * (a @ b.T)).clamp_min_(0.0)


def iter_sq_dists(
    queries: torch.Tensor, keys: torch.Tensor, chunk: int | None = None
) -> Iterator[tuple[slice, torch.Tensor]]:
    """Yield ``(rows, d2)``: squared distances of a chunk of query rows to every key row."""
    chunk = chunk or chunk_rows(len(keys))
    k_sq = (keys * keys).sum(1)
    for s in range(0, len(queries), chunk):
        rows = slice(s, min(s + chunk, len(queries)))
        yield rows, pairwise_sq_dists(queries[rows], keys, k_sq)


def nearest_raw(
    queries: torch.Tensor,
    keys: torch.Tensor,
    *,
    exclude: Callable[[slice], torch.Tensor] | None = None,
    chunk: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest key of every query by raw L2: ``(distance [Q] float64, index [Q])``.

    ``exclude(rows)`` may return a ``[len(rows), K]`` bool mask of keys that a query may
    not pick (e.g. itself); a query with no allowed key gets distance ``inf``, index -1.
    """
    q32, k32 = queries.float(), keys.float()
    idx = torch.empty(len(queries), dtype=torch.long)
    for rows, d2 in iter_sq_dists(q32, k32, chunk):
        if exclude is not None:
            d2 = d2.masked_fill(exclude(rows), float("inf"))
        best, arg = d2.min(1)
        idx[rows] = torch.where(torch.isinf(best), torch.full_like(arg, -1), arg)
    dist = torch.full((len(queries),), float("inf"), dtype=torch.float64)
    ok = idx >= 0
    if ok.any():  # exact recomputation for the chosen neighbours
        dist[ok] = (queries[ok].double() - keys[idx[ok]].double()).norm(dim=1)
    return dist, idx
