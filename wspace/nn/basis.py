"""The basis of permutation-equivariant linear maps between weight-space features.

A feature tensor's *type* is the tuple of group ids of its kept axes (see
:mod:`wspace.nn.features`); the group acts on all axes with the same id at once.
Equivariant linear maps from a type ``a = (a_1..a_m)`` to a type ``b = (b_1..b_n)``
have a basis indexed by the partitions of the ``m + n`` axes into blocks whose axes
all carry the same group (UNF, Zhou et al. 2024; NFN's layers are the MLP case).
We enumerate a partition as

* a partition of the input axes (``in_blocks``) and one of the output axes
  (``out_blocks``), each block holding one group;
* a matching of some output blocks (``tied``) to distinct input blocks of the same group.

Its map: take the diagonal of every input block with several axes, reduce (mean by
default) over the unmatched input blocks, mix channels, then write the result on the
output: a matched output block copies its input block's index, an unmatched one is
broadcast; a block with several output axes is written on their diagonal. Blocks with
two axes of one group exist only for tensors such as a residual stream-to-stream
weight (group ``(g, g)``); for them the diagonal terms are what makes the basis complete.

The *core* of a term (the input side, before channel mixing) only depends on
``(input tensor, in_blocks, matched input blocks in output order)``: layers compute each
core once per call and concatenate, along channels, all cores that land on the same
``(output tensor, out_blocks, tied)``, so one channel-mixing matmul serves them all.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from itertools import combinations, permutations
from typing import Callable, Sequence

import torch

from ..errors import WeightSpaceError

Blocks = tuple[tuple[int, ...], ...]  # a set partition of axes; blocks sorted by their first axis

REDUCTIONS = ("mean", "sum", "max")


def check_reduction(reduction: str) -> None:
    """Raise :class:`WeightSpaceError` unless ``reduction`` is one of :data:`REDUCTIONS`."""
    if reduction not in REDUCTIONS:
        raise WeightSpaceError(f"unknown reduction '{reduction}'; expected one of {REDUCTIONS}")


@lru_cache(maxsize=None)
def group_partitions(groups: tuple[int, ...]) -> tuple[Blocks, ...]:
    """All partitions of ``range(len(groups))`` whose blocks each hold a single group id."""

    def rec(items: tuple[int, ...]) -> list[list[tuple[int, ...]]]:
        if not items:
            return [[]]
        first, rest = items[0], items[1:]
        out = []
        for part in rec(rest):
            out.append([(first,)] + part)  # ``first`` alone
            for k, block in enumerate(part):  # or joined to a block of its group
                if groups[block[0]] == groups[first]:
                    out.append(part[:k] + [(first,) + block] + part[k + 1:])
        return out

    parts = [tuple(sorted(p)) for p in rec(tuple(range(len(groups))))]
    return tuple(sorted(set(parts)))


@dataclass(frozen=True)
class CoreKey:
    """Input side of a basis term: tensor ``tensor``, partition ``blocks`` of its kept
    axes, and the input blocks kept (``tied``, in the order of the output blocks they
    feed); the other blocks are reduced."""

    tensor: int
    blocks: Blocks
    tied: tuple[int, ...]


@dataclass(frozen=True)
class OutKey:
    """Output side of a group of basis terms: tensor ``tensor``, partition ``blocks`` of
    its kept axes and the indices of the output blocks fed by input blocks (``tied``,
    ascending); the other output blocks are broadcast."""

    tensor: int
    blocks: Blocks
    tied: tuple[int, ...]


def equivariant_terms(
    in_types: Sequence[tuple[int, ...]],
    out_types: Sequence[tuple[int, ...]],
    allow: Callable[[int, int], bool] | None = None,
) -> list[tuple[OutKey, tuple[CoreKey, ...]]]:
    """Every basis term from ``in_types`` to ``out_types``, grouped by :class:`OutKey`.

    ``allow(i, j)`` restricts the (input tensor, output tensor) pairs (default: all).
    Output keys without any term are omitted.
    """
    plan = []
    for j, og in enumerate(out_types):
        for out_blocks in group_partitions(tuple(og)):
            out_g = [og[b[0]] for b in out_blocks]
            for r in range(len(out_blocks) + 1):
                for tied in combinations(range(len(out_blocks)), r):
                    cores = []
                    for i, ig in enumerate(in_types):
                        if allow is not None and not allow(i, j):
                            continue
                        for in_blocks in group_partitions(tuple(ig)):
                            in_g = [ig[b[0]] for b in in_blocks]
                            for sel in permutations(range(len(in_blocks)), r):
                                if all(in_g[s] == out_g[t] for s, t in zip(sel, tied)):
                                    cores.append(CoreKey(i, in_blocks, sel))
                    if cores:
                        plan.append((OutKey(j, out_blocks, tied), tuple(cores)))
    return plan


def _reduce(x: torch.Tensor, dims: tuple[int, ...], reduction: str) -> torch.Tensor:
    if reduction == "mean":
        # sum, then scale the small result: the backward of ``sum`` is a broadcast view,
        # while ``mean``'s backward materializes a full-size divided gradient.
        n = 1
        for d in dims:
            n *= x.shape[d]
        return x.sum(dim=dims) / n
    if reduction == "sum":
        return x.sum(dim=dims)
    if reduction == "max":
        return x.amax(dim=dims)
    raise WeightSpaceError(f"unknown reduction '{reduction}'; expected one of {REDUCTIONS}")


def diagonals(x: torch.Tensor, blocks: Blocks) -> torch.Tensor:
    """``x`` ``[B, C, *axes]`` -> ``[B, C, *(one axis per block)]``: the diagonal of every
    multi-axis block (a no-op when every block has one axis)."""
    if all(len(b) == 1 for b in blocks):
        return x
    ids = [0] * (x.dim() - 2)
    for k, b in enumerate(blocks):
        for a in b:
            ids[a] = 2 + k
    return torch.einsum(x, [0, 1, *ids], [0, 1, *range(2, 2 + len(blocks))])


def compute_core(x: torch.Tensor, blocks: Blocks, tied: tuple[int, ...], reduction: str = "mean") -> torch.Tensor:
    """``x`` ``[B, C, *axes]`` -> ``[B, C, *(one axis per tied block, in tied order)]``.

    Diagonals are taken inside multi-axis blocks; untied blocks are reduced.
    (:class:`CoreCache` computes the same, sharing work between cores.)
    """
    x = diagonals(x, blocks)
    pooled = tuple(2 + k for k in range(len(blocks)) if k not in tied)
    if pooled:
        x = _reduce(x, pooled, reduction)
    return _to_tied_order(x, tied)


def _to_tied_order(x: torch.Tensor, tied: tuple[int, ...]) -> torch.Tensor:
    kept = sorted(tied)  # x's block axes are in block order
    order = [kept.index(k) for k in tied]
    if order != list(range(len(order))):
        x = x.permute(0, 1, *(2 + o for o in order))
    return x


class CoreCache:
    """Computes the cores of one layer call, each once, reducing one block at a time
    from the cheapest already-reduced parent (the full mean of a matrix comes from its
    row means, not from the matrix again)."""

    def __init__(self, feats: Sequence[torch.Tensor], reduction: str):
        self.feats, self.reduction = feats, reduction
        self._reduced: dict[tuple, torch.Tensor] = {}
        self._cores: dict[CoreKey, torch.Tensor] = {}

    def get(self, key: CoreKey) -> torch.Tensor:
        z = self._cores.get(key)
        if z is None:
            z = self._cores[key] = _to_tied_order(self._kept(key.tensor, key.blocks, tuple(sorted(key.tied))), key.tied)
        return z

    def _kept(self, i: int, blocks: Blocks, kept: tuple[int, ...]) -> torch.Tensor:
        """Tensor ``i`` with only the ``kept`` blocks (in block order); the others reduced."""
        key = (i, blocks, kept)
        r = self._reduced.get(key)
        if r is None:
            if len(kept) == len(blocks):
                r = diagonals(self.feats[i], blocks)
            else:
                b = next(k for k in range(len(blocks)) if k not in kept)
                parent_kept = tuple(sorted(kept + (b,)))
                parent = self._kept(i, blocks, parent_kept)
                r = _reduce(parent, (2 + parent_kept.index(b),), self.reduction)
            self._reduced[key] = r
        return r


def embed(z: torch.Tensor, blocks: Blocks, tied: tuple[int, ...], sizes: tuple[int, ...]) -> torch.Tensor:
    """Write ``z`` ``[B, C, *(tied block axes)]`` onto an output of kept sizes ``sizes``.

    Returns a tensor *broadcastable* to ``[B, C, *sizes]``: broadcast (untied,
    single-axis) blocks are left as size-1 axes, to be expanded by the caller's sum.
    """
    n = len(sizes)
    if all(len(b) == 1 for b in blocks):
        for a in range(n):  # blocks[a] == (a,); tied blocks are in axis order already
            if a not in tied:
                z = z.unsqueeze(2 + a)
        return z
    nb = len(blocks)
    block_of = {a: k for k, b in enumerate(blocks) for a in b}
    operands: list = [z, [0, 1, *(2 + k for k in tied)]]
    out_ids, free_singles = [], []
    for a in range(n):
        k = block_of[a]
        b = blocks[k]
        if len(b) == 1 and k not in tied:
            free_singles.append(a)
            continue
        if a == b[0]:
            out_ids.append(2 + k)
        else:  # a further axis of a multi-axis block: tie it to the block's first axis with an identity
            eye = torch.eye(sizes[a], dtype=z.dtype, device=z.device)
            operands += [eye, [2 + k, 2 + nb + a]]
            out_ids.append(2 + nb + a)
    y = torch.einsum(*operands, [0, 1, *out_ids])
    for a in free_singles:
        y = y.unsqueeze(2 + a)
    return y
