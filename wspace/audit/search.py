"""Nearest training checkpoint after permutation alignment, without aligning every pair.

Aligning each generated network to each of ``N`` training networks by weight matching
costs ``G x N`` assignment problems. :class:`AlignedIndex` avoids most of them:

1. **Canonical frame.** Every training network is permuted once onto a common
   template (the aligned mean of a subsample); every query too. The raw distance in
   that frame, ``U(q, t)``, is the distance under one particular permutation, so it
   upper-bounds the aligned distance, and it ranks candidates well (chunked matmul).
2. **Invariant lower bound.** ``L(q, t)`` from sorted per-neuron statistics
   (:mod:`.invariants`) lower-bounds the distance after *any* permutation.
3. **Shortlist.** Each query is aligned exactly (weight matching, started from the
   permutation the canonical frame implies, so the result never exceeds ``U``) to its
   ``k`` best-ranked candidates only. The query is *certified* when every candidate
   not aligned has ``L >= `` the best aligned distance found: then no exhaustive
   search (the same per-pair weight matching on all ``N`` pairs) can find a nearer
   one. With ``exact=True`` the search keeps aligning the lowest-``L`` candidates
   until every query is certified (branch and bound: equal to the exhaustive search).

Per-pair weight matching is deterministic (a fresh seeded generator per call; the
group order of a sweep does not depend on the other pairs), so the shortlist result
and :func:`exhaustive_nearest_aligned` agree pair by pair.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from ..align import weight_matching
from ..errors import WeightSpaceError
from ..space import WeightSpace
from ..symmetry import Permutation, compose, inverse, permute
from .distances import chunk_rows, pairwise_sq_dists
from .invariants import invariant_features, lower_bound_sq

__all__ = ["AlignedIndex", "NearestAligned", "exhaustive_nearest_aligned"]

ExcludeFn = Callable[[torch.Tensor], torch.Tensor]  # query positions [c] -> bool mask [c, N] of forbidden keys

_TOL = 1e-7  # relative slack when comparing a lower bound with an aligned distance


@dataclass
class NearestAligned:
    """Result of an aligned nearest-neighbour search for ``Q`` queries.

    Attributes:
        index: ``[Q]`` nearest key (training row), -1 when a query has no allowed key.
        distance: ``[Q]`` aligned L2 distance to it (float64, ``inf`` when none).
        neighbors: ``[Q, K]`` the ``K`` nearest keys among those aligned, at most
            ``per_group`` per key group when the index has groups (-1 padding).
        neighbor_distance: ``[Q, K]`` their aligned distances (``inf`` padding).
        neighbor_perm: per group ``[Q, K, n_g]``: ``permute(keys[neighbors[q, j]], P)``
            is that key aligned onto query ``q``.
        evaluated: ``[Q]`` weight-matching problems solved for the query.
        certified: ``[Q]`` the result provably equals the exhaustive search's.
    """

    index: torch.Tensor
    distance: torch.Tensor
    neighbors: torch.Tensor
    neighbor_distance: torch.Tensor
    neighbor_perm: dict[int, torch.Tensor]
    evaluated: torch.Tensor
    certified: torch.Tensor

    def aligned_neighbors(self, keys: WeightSpace) -> tuple[torch.Tensor, torch.Tensor]:
        """``([Q, K, D] float64 aligned neighbour vectors, [Q, K] valid mask)``."""
        Q, K = self.neighbors.shape
        valid = self.neighbors >= 0
        idx = self.neighbors.clamp_min(0).reshape(-1)
        perm = Permutation({g: p.reshape(Q * K, -1) for g, p in self.neighbor_perm.items()})
        flat = permute(keys.map(lambda t: t[idx]), perm).flatten().double()
        return flat.reshape(Q, K, -1), valid


def _fresh(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


class AlignedIndex:
    """Training networks prepared for aligned nearest-neighbour queries (see module doc).

    Args:
        keys: the training networks (``N``).
        groups: optional label per key (e.g. its run): the neighbours kept for
            interpolation checks are then at most ``per_group`` nearest keys of each
            group (near copies of one checkpoint would otherwise fill them; two per
            run, because the nearest checkpoint of a run to an interpolation of its
            final checkpoint may be an earlier one).
        seed: seed of every weight-matching call (results are reproducible).
        template_size: networks averaged into the canonical template.
        template_iters: align-and-average rounds building the template.
        max_iter: weight-matching sweeps per pair.
    """

    def __init__(self, keys: WeightSpace, *, groups=None, per_group: int = 2, seed: int = 0,
                 template_size: int = 512, template_iters: int = 2, max_iter: int = 100):
        if len(keys) == 0:
            raise WeightSpaceError("cannot index an empty set of networks")
        self.keys = keys.detach().to("cpu", torch.float32)
        if groups is not None:
            labels = [str(x) for x in groups]
            if len(labels) != len(keys):
                raise WeightSpaceError(f"{len(labels)} group labels for {len(keys)} networks")
            codes: dict[str, int] = {}
            groups = torch.tensor([codes.setdefault(x, len(codes)) for x in labels], dtype=torch.long)
        self.groups = groups
        self.per_group = max(1, int(per_group))
        self.spec = keys.spec
        self.seed = int(seed)
        self.max_iter = int(max_iter)
        self.pairs_solved = 0  # weight-matching problems solved so far (for benchmarks)
        g = _fresh(self.seed)
        sub = torch.randperm(len(keys), generator=g)[:template_size]
        template = self.keys[int(sub[0])]
        for _ in range(max(1, template_iters)):
            members = self.keys.map(lambda t: t[sub])
            P = weight_matching(template, members, generator=_fresh(self.seed), max_iter=self.max_iter)
            template = permute(members, P).map(lambda t: t.mean(0, keepdim=True))
        self.template = template
        self.perm = self._canonical_perm(self.keys)
        canon = permute(self.keys, self.perm).flatten()
        self.center = canon.mean(0, keepdim=True)
        self.canon = canon - self.center  # centred: better conditioned distance expansion
        self.canon_sq = (self.canon * self.canon).sum(1)
        self.feats = self._features(self.keys, fit=True)

    # ------------------------------------------------------------------ pieces
    def _canonical_perm(self, ws: WeightSpace, chunk: int = 4096) -> Permutation:
        parts = []
        for s in range(0, len(ws), chunk):
            sub = ws.map(lambda t: t[s:s + chunk].float())
            parts.append(weight_matching(self.template, sub, generator=_fresh(self.seed), max_iter=self.max_iter))
        return Permutation({g: torch.cat([p.perms[g] for p in parts]) for g in parts[0].perms})

    def _features(self, ws: WeightSpace, fit: bool = False) -> list[list[torch.Tensor]]:
        feats = invariant_features(ws)
        if fit:  # centre each feature on the keys' mean (distances unchanged, less rounding)
            self._fcenter = [[f.mean(0, keepdim=True) for f in fs] for fs in feats]
        return [[f - c for f, c in zip(fs, cs)] for fs, cs in zip(feats, self._fcenter)]

    def prepare(self, queries: WeightSpace) -> dict:
        """Canonical permutations, canonical vectors and invariant features of ``queries``."""
        if not queries.spec.same_space(self.spec):
            raise WeightSpaceError(
                f"the queried networks ({queries.spec.describe()}) and the indexed ones ({self.spec.describe()}) "
                "have different architectures")
        q = queries.detach().to("cpu", torch.float32)
        perm = self._canonical_perm(q)
        return {"ws": q, "perm": perm, "canon": permute(q, perm).flatten() - self.center, "feats": self._features(q)}

    def match_pairs(self, prep: dict, qpos: torch.Tensor, kidx: torch.Tensor,
                    batch: int = 2048) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
        """Weight matching of key ``kidx[i]`` onto query ``qpos[i]`` for every pair.

        Returns the aligned distances ``[P]`` (float64) and the permutations (per group
        ``[P, n_g]``) that map each key onto its query.
        """
        dists, perms = [], []
        for s in range(0, len(qpos), batch):
            qi, ki = qpos[s:s + batch], kidx[s:s + batch]
            q = prep["ws"].map(lambda t: t[qi])
            k = self.keys.map(lambda t: t[ki])
            init = compose(self.perm.select(ki), inverse(prep["perm"].select(qi)))
            P = weight_matching(q, k, init=init, generator=_fresh(self.seed), max_iter=self.max_iter)
            diff = q.flatten().double() - permute(k, P).flatten().double()
            dists.append(diff.norm(dim=1))
            perms.append(P.perms)
            self.pairs_solved += len(qi)
        if not dists:
            return torch.zeros(0, dtype=torch.float64), {g.id: torch.zeros(0, g.size, dtype=torch.long)
                                                          for g in self.spec.groups}
        return torch.cat(dists), {g: torch.cat([p[g] for p in perms]) for g in perms[0]}

    # ------------------------------------------------------------------ search
    def query(
        self,
        queries: WeightSpace | dict,
        *,
        k: int = 16,
        keep: int = 4,
        exclude: ExcludeFn | None = None,
        exact: bool = False,
        chunk: int | None = None,
    ) -> NearestAligned:
        """Nearest key of every query after alignment (see module doc).

        Args:
            queries: networks (or the output of :meth:`prepare`).
            k: candidates aligned per query and round.
            keep: nearest aligned neighbours kept per query (for interpolation checks).
            exclude: ``exclude(query positions [c]) -> [c, N]`` bool mask of keys a
                query may not match (itself, its own run...).
            exact: keep aligning until every query is certified (= exhaustive result).
        """
        prep = queries if isinstance(queries, dict) else self.prepare(queries)
        Q, N = len(prep["ws"]), len(self.keys)
        k = max(1, min(int(k), N))
        chunk = chunk or max(1, chunk_rows(N, 4_000_000))
        out_idx = torch.full((Q, keep), -1, dtype=torch.long)
        out_d = torch.full((Q, keep), float("inf"), dtype=torch.float64)
        out_p = {g.id: torch.zeros(Q, keep, g.size, dtype=torch.long) for g in self.spec.groups}
        evaluated = torch.zeros(Q, dtype=torch.long)
        certified = torch.zeros(Q, dtype=torch.bool)
        for s in range(0, Q, chunk):
            qpos = torch.arange(s, min(s + chunk, Q))
            rows = slice(s, s + len(qpos))
            ub = pairwise_sq_dists(prep["canon"][rows], self.canon, self.canon_sq)
            lb = lower_bound_sq(prep["feats"], self.feats, rows).sqrt_()
            banned = exclude(qpos) if exclude is not None else torch.zeros(len(qpos), N, dtype=torch.bool)
            ub.masked_fill_(banned, float("inf"))
            lb.masked_fill_(banned, float("inf"))
            done = banned.clone()  # keys a query may no longer pick (banned or already aligned)
            ev_i, ev_d, ev_p = [], [], []
            rank = ub  # first round: canonical-frame distance; later rounds: lower bound
            best = torch.full((len(qpos),), float("inf"), dtype=torch.float64)
            while True:
                score = rank.masked_fill(done, float("inf"))
                if ev_d:  # only candidates that could still beat the best
                    score = score.masked_fill(lb >= best.unsqueeze(1) * (1 - _TOL) - _TOL, float("inf"))
                top_s, top_i = score.topk(k, dim=1, largest=False)
                live = torch.isfinite(top_s)
                if not live.any():
                    break
                r, c = live.nonzero(as_tuple=True)
                d, P = self.match_pairs(prep, qpos[r], top_i[r, c])
                dmat = torch.full((len(qpos), k), float("inf"), dtype=torch.float64)
                dmat[r, c] = d
                pm = {}
                for g, p in P.items():
                    full = torch.zeros(len(qpos), k, p.shape[1], dtype=torch.long)
                    full[r, c] = p
                    pm[g] = full
                ev_i.append(torch.where(live, top_i, torch.full_like(top_i, -1)))
                ev_d.append(dmat)
                ev_p.append(pm)
                done[r, top_i[r, c]] = True
                evaluated[qpos] += live.sum(1)
                best = torch.minimum(best, dmat.min(1).values)
                rank = lb
                if not exact:
                    break
            # certified: every key not aligned has a lower bound at least the best distance
            rest = lb.masked_fill(done, float("inf")).min(1).values
            certified[qpos] = (rest >= best * (1 - _TOL) - _TOL) | torch.isinf(best) & torch.isinf(rest)
            all_i, all_d = torch.cat(ev_i, 1), torch.cat(ev_d, 1)
            if self.groups is not None:  # keep the nearest member of each group (run) only
                gid = self.groups[all_i.clamp_min(0)]
                same = gid.unsqueeze(2) == gid.unsqueeze(1)  # [c, M, M]
                nearer = (all_d.unsqueeze(1) < all_d.unsqueeze(2)) | (
                    (all_d.unsqueeze(1) == all_d.unsqueeze(2))
                    & (torch.arange(all_d.shape[1]).unsqueeze(0) < torch.arange(all_d.shape[1]).unsqueeze(1)))
                shadowed = (same & nearer & (all_i >= 0).unsqueeze(1)).sum(2) >= self.per_group
                rank_d = all_d.masked_fill(shadowed, float("inf"))
            else:
                rank_d = all_d
            kk = min(keep, all_d.shape[1])
            _, sel = rank_d.topk(kk, dim=1, largest=False)
            sel_d = rank_d.gather(1, sel)
            out_d[qpos, :kk] = sel_d
            out_idx[qpos, :kk] = torch.where(torch.isfinite(sel_d), all_i.gather(1, sel), torch.full_like(sel, -1))
            for g in out_p:
                allp = torch.cat([p[g] for p in ev_p], 1)
                out_p[g][qpos, :kk] = allp.gather(1, sel.unsqueeze(2).expand(-1, -1, allp.shape[2]))
        return NearestAligned(out_idx[:, 0].clone(), out_d[:, 0].clone(), out_idx, out_d, out_p, evaluated, certified)


def exhaustive_nearest_aligned(index: AlignedIndex, queries: WeightSpace, *, exclude: ExcludeFn | None = None,
                               pair_batch: int = 2048) -> tuple[torch.Tensor, torch.Tensor]:
    """Weight matching of every query against every key: ``(distance [Q], index [Q])``.

    The reference the shortlist search is checked against (``Q x N`` problems).
    """
    prep = index.prepare(queries)
    Q, N = len(queries), len(index.keys)
    qpos = torch.arange(Q).repeat_interleave(N)
    kidx = torch.arange(N).repeat(Q)
    d, _ = index.match_pairs(prep, qpos, kidx, batch=pair_batch)
    d = d.reshape(Q, N)
    if exclude is not None:
        d = d.masked_fill(exclude(torch.arange(Q)), float("inf"))
    best, arg = d.min(1)
    return best, torch.where(torch.isinf(best), torch.full_like(arg, -1), arg)
