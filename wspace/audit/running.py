"""Reductions over keys that arrive chunk by chunk: the best key, the ``k`` best keys.

The audit streams the training networks (:mod:`.population`); every nearest-neighbour
quantity is a running reduction over the chunks. :class:`RunningBest` keeps the key seen first among equal values, so its
streamed result equals ``argmin`` / ``argmax`` over all keys at once; the top-k tables
keep the ``k`` smallest values (which of several equal values is unspecified).
"""
from __future__ import annotations

import torch

__all__ = ["RunningBest", "RunningTopK", "RunningGroupTopK"]


class RunningBest:
    """Per row, the best value so far and the global index of its key (-1: none yet).

    Args:
        rows: number of rows (queries).
        largest: keep the largest value (else the smallest).
    """

    def __init__(self, rows: int, *, largest: bool = False, dtype: torch.dtype = torch.float64):
        fill = float("-inf") if largest else float("inf")
        self.largest = largest
        self.value = torch.full((rows,), fill, dtype=dtype)
        self.index = torch.full((rows,), -1, dtype=torch.long)

    def update(self, value: torch.Tensor, index: torch.Tensor, rows: slice | torch.Tensor = slice(None)) -> None:
        """Merge the best of a new chunk (``value``, global ``index`` < 0 meaning none)."""
        value = value.to(self.value.dtype)
        old = self.value[rows]
        better = (value > old) if self.largest else (value < old)
        better &= index >= 0
        self.value[rows] = torch.where(better, value, old)
        self.index[rows] = torch.where(better, index, self.index[rows])


class RunningTopK:
    """Per row, the ``k`` smallest values so far (ascending) and their keys' global indices.

    Entries that are ``inf`` (masked keys) carry index -1. ``filled[r]`` counts the finite
    values kept; while it is below ``k`` every allowed key seen so far is kept.
    """

    def __init__(self, rows: int, k: int, dtype: torch.dtype = torch.float64):
        self.k = int(k)
        self.value = torch.full((rows, self.k), float("inf"), dtype=dtype)
        self.index = torch.full((rows, self.k), -1, dtype=torch.long)

    def update(self, value: torch.Tensor, offset: int, rows: slice | torch.Tensor = slice(None)) -> None:
        """Merge a ``[r, C]`` block of values of keys ``offset .. offset + C - 1``."""
        kk = min(self.k, value.shape[1])
        v, i = value.to(self.value.dtype).topk(kk, dim=1, largest=False)
        i = torch.where(torch.isfinite(v), i + offset, torch.full_like(i, -1))
        old_v, old_i = self.value[rows], self.index[rows]
        all_v, all_i = torch.cat([old_v, v], 1), torch.cat([old_i, i], 1)
        order = all_v.sort(dim=1, stable=True).indices[:, :self.k]
        self.value[rows] = all_v.gather(1, order)
        self.index[rows] = all_i.gather(1, order)

    @property
    def filled(self) -> torch.Tensor:
        return torch.isfinite(self.value).sum(1)


class RunningGroupTopK:
    """Per row, the ``m`` smallest values of *distinct groups* (each group's best key), ascending.

    Used to shortlist candidates from several runs: a zoo that stores many near-identical
    checkpoints of one run would otherwise fill a plain top-k with that run alone, and an
    interpolation between two runs would never see its second endpoint.

    Args:
        rows: number of rows (queries).
        m: groups kept per row.
        groups: ``[N]`` group code of every key.
    """

    def __init__(self, rows: int, m: int, groups: torch.Tensor, dtype: torch.dtype = torch.float64):
        self.m = int(m)
        self.groups = torch.as_tensor(groups, dtype=torch.long)
        self.value = torch.full((rows, self.m), float("inf"), dtype=dtype)
        self.index = torch.full((rows, self.m), -1, dtype=torch.long)
        self.group = torch.full((rows, self.m), -1, dtype=torch.long)

    def update(self, value: torch.Tensor, offset: int, rows: slice | torch.Tensor = slice(None)) -> None:
        """Merge a ``[r, C]`` block of values of keys ``offset .. offset + C - 1``."""
        r, C = value.shape
        value = value.to(self.value.dtype)
        codes, inv = torch.unique(self.groups[offset:offset + C], return_inverse=True)
        G = len(codes)
        idx = inv.unsqueeze(0).expand(r, C)
        best = torch.full((r, G), float("inf"), dtype=value.dtype).scatter_reduce(1, idx, value, "amin")
        # the first key of each group that attains its best value
        cols = torch.arange(C).unsqueeze(0).expand(r, C)
        hit = torch.where(value == best.gather(1, idx), cols, torch.full_like(cols, C))
        first = torch.full((r, G), C, dtype=torch.long).scatter_reduce(1, idx, hit, "amin")
        kk = min(self.m, G)
        v, j = best.topk(kk, dim=1, largest=False)
        ok = torch.isfinite(v)
        key = torch.where(ok, first.gather(1, j) + offset, torch.full_like(j, -1))
        grp = torch.where(ok, codes[j], torch.full_like(j, -1))
        all_v = torch.cat([self.value[rows], v], 1)
        all_i = torch.cat([self.index[rows], key], 1)
        all_g = torch.cat([self.group[rows], grp], 1)
        order = all_v.sort(dim=1, stable=True).indices
        all_v, all_i, all_g = all_v.gather(1, order), all_i.gather(1, order), all_g.gather(1, order)
        n = all_g.shape[1]
        earlier = torch.ones(n, n, dtype=torch.bool).tril(-1)  # [i, j]: j comes before i
        dup = ((all_g.unsqueeze(2) == all_g.unsqueeze(1)) & earlier & (all_g >= 0).unsqueeze(2)).any(2)
        all_v = all_v.masked_fill(dup, float("inf"))
        order = all_v.sort(dim=1, stable=True).indices[:, :self.m]
        keep_v = all_v.gather(1, order)
        fin = torch.isfinite(keep_v)
        self.value[rows] = keep_v
        self.index[rows] = torch.where(fin, all_i.gather(1, order), torch.full_like(order, -1))
        self.group[rows] = torch.where(fin, all_g.gather(1, order), torch.full_like(order, -1))
