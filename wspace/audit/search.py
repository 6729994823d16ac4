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
   ``k`` best-ranked candidates only (plus, when keys have groups such as runs, the
   best-ranked key of each of the ``k // 4`` nearest groups, so that many near-identical
   checkpoints of one run cannot crowd out the others). The query is *certified* when every candidate
   not aligned has ``L >= `` the best aligned distance found: then no exhaustive
   search (the same per-pair weight matching on all ``N`` pairs) can find a nearer
   one. With ``exact=True`` the search keeps aligning the lowest-``L`` candidates
   until every query is certified (branch and bound: equal to the exhaustive search).

The keys are streamed (:class:`~.population.Population`): a search is one pass over
chunks of training networks that keeps, per query, the ``k`` best canonical-frame
candidates and the lowest lower bounds (:mod:`.running`), then aligns the candidates,
gathering only their rows. What the index keeps per key is its canonical permutation
(a few bytes per neuron), so memory does not grow with the zoo's weights.

Per-pair weight matching is deterministic (a fresh seeded generator per call; the
group order of a sweep does not depend on the other pairs), so the shortlist result
and :func:`exhaustive_nearest_aligned` agree pair by pair.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch

from ..align import weight_matching
from ..errors import WeightSpaceError
from ..space import WeightSpace
from ..symmetry import Permutation, compose, inverse, permute
from .distances import chunk_rows, pairwise_sq_dists
from .invariants import invariant_features, lower_bound_sq
from .population import Population
from .running import RunningBest, RunningGroupTopK, RunningTopK

__all__ = ["AlignedIndex", "Exclusion", "NearestAligned", "ShortlistSearch", "exhaustive_nearest_aligned"]

#: ``exclude(query positions [c], first key, end key) -> [c, end - first]`` bool mask of keys a query may not pick
ExcludeFn = Callable[[torch.Tensor, int, int], torch.Tensor]

_TOL = 1e-7  # relative slack when comparing a lower bound with an aligned distance
_GATHER_ENTRIES = 16_000_000  # weights gathered at once by match_pairs (64 MB in float32)


class Exclusion:
    """Keys a query may not match: itself (``self_rows[q]``, -1: none) and, where
    ``query_runs[q] >= 0``, every key of that run (``key_runs``: run code per key).
    Called as an :data:`ExcludeFn`."""

    def __init__(self, self_rows: torch.Tensor, query_runs: torch.Tensor | None = None,
                 key_runs: torch.Tensor | None = None):
        self.self_rows = torch.as_tensor(self_rows, dtype=torch.long)
        self.query_runs = None if query_runs is None else torch.as_tensor(query_runs, dtype=torch.long)
        self.key_runs = None if key_runs is None else torch.as_tensor(key_runs, dtype=torch.long)
        if (self.query_runs is None) != (self.key_runs is None):
            raise WeightSpaceError("run exclusion needs the run of every query and of every key")

    def __call__(self, qpos: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        cols = torch.arange(start, stop)
        mask = cols.unsqueeze(0) == self.self_rows[qpos].unsqueeze(1)
        if self.query_runs is not None:
            qr = self.query_runs[qpos].unsqueeze(1)
            mask |= (self.key_runs[start:stop].unsqueeze(0) == qr) & (qr >= 0)
        return mask


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
            is that key aligned onto query ``q`` (see :meth:`AlignedIndex.aligned_neighbors`).
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


def _fresh(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


class AlignedIndex:
    """Training networks prepared for aligned nearest-neighbour queries (see module doc).

    Args:
        keys: the training networks (``N``): a WeightSpace, a zoo or a :class:`Population`.
        transform: applied to every chunk of keys as it is read (e.g. a canonical frame
            of the non-permutation symmetries); queries are expected in the same frame.
        groups: optional label per key (e.g. its run): the neighbours kept for
            interpolation checks are then at most ``per_group`` nearest keys of each
            group (near copies of one checkpoint would otherwise fill them; two per
            run, because the nearest checkpoint of a run to an interpolation of its
            final checkpoint may be an earlier one).
        seed: seed of every weight-matching call (results are reproducible).
        template_size: networks averaged into the canonical template.
        template_iters: align-and-average rounds building the template.
        max_iter: weight-matching sweeps per pair.
        chunk_rows: keys per chunk of a pass (default: the population's).
    """

    def __init__(self, keys: Any, *, transform: Callable[[WeightSpace], WeightSpace] | None = None, groups=None,
                 per_group: int = 2, seed: int = 0, template_size: int = 512, template_iters: int = 2,
                 max_iter: int = 100, chunk_rows: int | None = None):
        if isinstance(keys, WeightSpace) and len(keys) == 0:
            raise WeightSpaceError("cannot index an empty set of networks")
        self.population = keys if isinstance(keys, Population) else Population(keys, "indexed", chunk_rows)
        self.chunk_rows = int(chunk_rows) if chunk_rows else self.population.chunk_rows
        self.transform = transform
        N = len(self.population)
        if groups is not None:
            labels = [str(x) for x in groups]
            if len(labels) != N:
                raise WeightSpaceError(f"{len(labels)} group labels for {N} networks")
            codes: dict[str, int] = {}
            groups = torch.tensor([codes.setdefault(x, len(codes)) for x in labels], dtype=torch.long)
        self.groups = groups
        self.per_group = max(1, int(per_group))
        self.spec = self.population.spec
        self.seed = int(seed)
        self.max_iter = int(max_iter)
        self.pairs_solved = 0  # weight-matching problems solved so far (for benchmarks)
        sub = torch.randperm(N, generator=_fresh(self.seed))[:template_size]
        members = self.keys_at(sub)
        template = members[0]
        for _ in range(max(1, template_iters)):
            P = weight_matching(template, members, generator=_fresh(self.seed), max_iter=self.max_iter)
            template = permute(members, P).map(lambda t: t.mean(0, keepdim=True))
        self.template = template
        # centre of the canonical vectors and of the invariant features: the subsample's mean
        # (distances do not depend on it; it only keeps the expansions well conditioned)
        self.center = template.flatten()
        self._fcenter = [[f.mean(0, keepdim=True) for f in fs] for fs in invariant_features(members)]
        # canonical permutation of every key, filled by the first pass (small integers)
        small = max(g.size for g in self.spec.groups) < 2 ** 15 if self.spec.groups else True
        self._perm = {g.id: torch.full((N, g.size), -1, dtype=torch.int16 if small else torch.int32)
                      for g in self.spec.groups}
        self._known = torch.zeros(N, dtype=torch.bool)

    def __len__(self) -> int:
        return len(self.population)

    # ------------------------------------------------------------------ pieces
    def keys_at(self, index: torch.Tensor) -> WeightSpace:
        """The keys at ``index`` (in the index's frame, float32)."""
        ws = self.population.rows(index)
        return self.transform(ws) if self.transform is not None else ws

    def chunks(self):
        """``(first row, keys)`` for every chunk of keys, in the index's frame."""
        for start, ws in self.population.chunks(self.chunk_rows):
            yield start, (self.transform(ws) if self.transform is not None else ws)

    def _canonical_perm(self, ws: WeightSpace, chunk: int = 4096) -> Permutation:
        parts = []
        for s in range(0, len(ws), chunk):
            sub = ws.map(lambda t: t[s:s + chunk].float())
            parts.append(weight_matching(self.template, sub, generator=_fresh(self.seed), max_iter=self.max_iter))
        return Permutation({g: torch.cat([p.perms[g] for p in parts]) for g in parts[0].perms})

    def key_perms(self, rows: torch.Tensor, keys: WeightSpace) -> Permutation:
        """Canonical permutations of the keys ``keys`` at rows ``rows`` (computed once, then kept)."""
        rows = torch.as_tensor(rows, dtype=torch.long)
        todo = torch.nonzero(~self._known[rows]).flatten()
        if len(todo):
            P = self._canonical_perm(keys.map(lambda t: t[todo]))
            for g, p in P.items():
                self._perm[g][rows[todo]] = p.to(self._perm[g].dtype)
            self._known[rows[todo]] = True
        return Permutation({g: p[rows].long() for g, p in self._perm.items()})

    def features(self, ws: WeightSpace) -> list[list[torch.Tensor]]:
        """Invariant features of ``ws`` (in the index's frame), centred like the keys'."""
        return [[f - c for f, c in zip(fs, cs)] for fs, cs in zip(invariant_features(ws), self._fcenter)]

    def prepare(self, queries: WeightSpace) -> dict:
        """Canonical permutations, canonical vectors and invariant features of ``queries``."""
        if not queries.spec.same_space(self.spec):
            raise WeightSpaceError(
                f"the queried networks ({queries.spec.describe()}) and the indexed ones ({self.spec.describe()}) "
                "have different architectures")
        q = queries.detach().to("cpu", torch.float32)
        perm = self._canonical_perm(q) if len(q) else Permutation(
            {g.id: torch.zeros(0, g.size, dtype=torch.long) for g in self.spec.groups})
        return {"ws": q, "perm": perm, "canon": permute(q, perm).flatten() - self.center, "feats": self.features(q)}

    def _match(self, prep: dict, qpos: torch.Tensor, keys: WeightSpace, kperm: Permutation, kloc: torch.Tensor,
               batch: int = 2048) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
        """Weight matching of ``keys[kloc[i]]`` onto query ``qpos[i]`` for every pair (``kperm``:
        the keys' canonical permutations). Returns distances ``[P]`` and permutations."""
        dists, perms = [], []
        for s in range(0, len(qpos), batch):
            qi, ki = qpos[s:s + batch], kloc[s:s + batch]
            q = prep["ws"].map(lambda t: t[qi])
            k = keys.map(lambda t: t[ki])
            init = compose(kperm.select(ki), inverse(prep["perm"].select(qi)))
            P = weight_matching(q, k, init=init, generator=_fresh(self.seed), max_iter=self.max_iter)
            diff = q.flatten().double() - permute(k, P).flatten().double()
            dists.append(diff.norm(dim=1))
            perms.append(P.perms)
            self.pairs_solved += len(qi)
        if not dists:
            return torch.zeros(0, dtype=torch.float64), {g.id: torch.zeros(0, g.size, dtype=torch.long)
                                                          for g in self.spec.groups}
        return torch.cat(dists), {g: torch.cat([p[g] for p in perms]) for g in perms[0]}

    def match_pairs(self, prep: dict, qpos: torch.Tensor, kidx: torch.Tensor,
                    batch: int = 2048) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
        """Weight matching of key ``kidx[i]`` onto query ``qpos[i]`` for every pair.

        Returns the aligned distances ``[P]`` (float64) and the permutations (per group
        ``[P, n_g]``) that map each key onto its query. The keys are gathered in blocks
        (at most about 64 MB of weights at a time).
        """
        qpos, kidx = torch.as_tensor(qpos, dtype=torch.long), torch.as_tensor(kidx, dtype=torch.long)
        if len(qpos) == 0:
            return torch.zeros(0, dtype=torch.float64), {g.id: torch.zeros(0, g.size, dtype=torch.long)
                                                          for g in self.spec.groups}
        step = max(batch, _GATHER_ENTRIES // max(1, self.spec.num_params))
        dists, perms = [], []
        for s in range(0, len(qpos), step):
            uk, loc = torch.unique(kidx[s:s + step], return_inverse=True)
            keys = self.keys_at(uk)
            d, P = self._match(prep, qpos[s:s + step], keys, self.key_perms(uk, keys), loc, batch)
            dists.append(d)
            perms.append(P)
        return torch.cat(dists), {g: torch.cat([p[g] for p in perms]) for g in perms[0]}

    def aligned_neighbors(self, result: NearestAligned, rows: slice | torch.Tensor = slice(None)
                          ) -> tuple[torch.Tensor, torch.Tensor]:
        """``([c, K, D] float64 neighbours aligned onto their queries, [c, K] valid mask)`` for
        the queries ``rows`` of a search result (in the index's frame)."""
        nb = result.neighbors[rows]
        Q, K = nb.shape
        valid = nb >= 0
        uk, loc = torch.unique(nb.clamp_min(0).reshape(-1), return_inverse=True)
        keys = self.keys_at(uk).map(lambda t: t[loc])
        perm = Permutation({g: p[rows].reshape(Q * K, -1) for g, p in result.neighbor_perm.items()})
        return permute(keys, perm).flatten().double().reshape(Q, K, -1), valid

    # ------------------------------------------------------------------ search
    def search(self, queries: WeightSpace | dict, *, k: int = 16, keep: int = 4, exclude: ExcludeFn | None = None,
               exact: bool = False) -> "ShortlistSearch":
        """A search to feed chunk by chunk (:meth:`ShortlistSearch.update`), e.g. from a pass
        over the training networks shared with other measurements; :meth:`query` does it all."""
        prep = queries if isinstance(queries, dict) else self.prepare(queries)
        return ShortlistSearch(self, prep, k=k, keep=keep, exclude=exclude, exact=exact)

    def query(
        self,
        queries: WeightSpace | dict,
        *,
        k: int = 16,
        keep: int = 4,
        exclude: ExcludeFn | None = None,
        exact: bool = False,
    ) -> NearestAligned:
        """Nearest key of every query after alignment (see module doc).

        Args:
            queries: networks (or the output of :meth:`prepare`).
            k: candidates aligned per query and round.
            keep: nearest aligned neighbours kept per query (for interpolation checks).
            exclude: ``exclude(query positions [c], first, end) -> [c, end - first]`` bool
                mask of keys a query may not match (itself, its own run...; see :class:`Exclusion`).
            exact: keep aligning until every query is certified (= exhaustive result).
        """
        s = self.search(queries, k=k, keep=keep, exclude=exclude, exact=exact)
        for start, raw in self.population.chunks(self.chunk_rows):
            s.update(start, raw)
        return s.finish()


class ShortlistSearch:
    """One aligned search in progress: :meth:`update` with every chunk of raw keys (in
    order, each once), then :meth:`finish` aligns the candidates."""

    def __init__(self, index: AlignedIndex, prep: dict, *, k: int, keep: int, exclude: ExcludeFn | None,
                 exact: bool):
        self.index, self.prep = index, prep
        self.Q, self.N = len(prep["ws"]), len(index)
        self.k = max(1, min(int(k), self.N))
        self.keep, self.exclude, self.exact = int(keep), exclude, bool(exact)
        self.cand = RunningTopK(self.Q, self.k)  # best canonical-frame distances
        # and the best key of the nearest few groups (runs): near-copies of one run must not crowd
        # out the other endpoint of an interpolation
        self.diverse = (RunningGroupTopK(self.Q, max(2, self.k // 4), index.groups)
                        if index.groups is not None else None)
        # lowest lower bounds: one more than the candidates certifies a shortlist; more feed exact rounds
        self.low_k = 4 * self.k if self.exact else self.k + 1
        self.low = RunningTopK(self.Q, self.low_k)
        self.seen = 0

    def _blocks(self, n_keys: int):
        step = max(1, chunk_rows(n_keys, 4_000_000))
        for s in range(0, self.Q, step):
            yield slice(s, min(s + step, self.Q)), torch.arange(s, min(s + step, self.Q))

    def update(self, start: int, raw: WeightSpace) -> None:
        """Score the chunk of raw keys ``raw`` (rows ``start ..``) against every query."""
        ix = self.index
        if start != self.seen:
            raise WeightSpaceError(f"chunks must arrive in order: expected row {self.seen}, got {start}")
        keys = ix.transform(raw) if ix.transform is not None else raw
        C = len(keys)
        canon = permute(keys, ix.key_perms(torch.arange(start, start + C), keys)).flatten() - ix.center
        canon_sq = (canon * canon).sum(1)
        feats = ix.features(keys)
        for rows, qpos in self._blocks(C):
            ub = pairwise_sq_dists(self.prep["canon"][rows], canon, canon_sq)
            lb = lower_bound_sq(self.prep["feats"], feats, rows).sqrt_()
            if self.exclude is not None:
                banned = self.exclude(qpos, start, start + C)
                ub.masked_fill_(banned, float("inf"))
                lb.masked_fill_(banned, float("inf"))
            self.cand.update(ub, start, rows)
            if self.diverse is not None:
                self.diverse.update(ub, start, rows)
            self.low.update(lb, start, rows)
        self.seen += C

    # ------------------------------------------------------------------ finish
    def _taken(self, aligned: torch.Tensor) -> torch.Tensor:
        """``[Q, low_k]``: kept lower-bound entries that are empty or already aligned."""
        low_i = self.low.index
        return (low_i.unsqueeze(2) == aligned.unsqueeze(1)).any(2) | (low_i < 0)

    def _rest(self, aligned: torch.Tensor) -> torch.Tensor:
        """``[Q]`` a lower bound of every key not aligned yet (``aligned``: ``[Q, M]`` keys, -1 pad)."""
        low_v = self.low.value
        rest = low_v.masked_fill(self._taken(aligned), float("inf")).min(1).values
        full = self.low.filled >= self.low_k  # keys beyond the kept ones are at least the last kept
        return torch.where(full, torch.minimum(rest, low_v[:, -1]), rest)

    def _refill(self, queries: torch.Tensor, aligned: torch.Tensor) -> None:
        """Another pass: the lowest lower bounds of ``queries`` among keys not aligned yet."""
        ix = self.index
        feats = [[f[queries] for f in fs] for fs in self.prep["feats"]]
        low = RunningTopK(len(queries), self.low_k)
        al = aligned[queries]
        for start, keys in ix.chunks():
            C = len(keys)
            lb = lower_bound_sq(feats, ix.features(keys)).sqrt_()
            cols = torch.arange(start, start + C)
            lb.masked_fill_((al.unsqueeze(2) == cols.view(1, 1, -1)).any(1), float("inf"))
            if self.exclude is not None:
                lb.masked_fill_(self.exclude(queries, start, start + C), float("inf"))
            low.update(lb, start)
        self.low.value[queries], self.low.index[queries] = low.value, low.index

    def _align(self, cand: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict[int, torch.Tensor]]:
        """Align every live candidate ``cand [Q, c]`` (-1: none): ``(keys, distances, perms)`` ``[Q, c]``.

        One pass over the keys: the pairs of each chunk are aligned while it is in memory
        (no gather of scattered rows)."""
        ix = self.index
        r, c = (cand >= 0).nonzero(as_tuple=True)
        kidx = cand[r, c]
        dmat = torch.full(cand.shape, float("inf"), dtype=torch.float64)
        pm = {g.id: torch.zeros(*cand.shape, g.size, dtype=torch.long) for g in ix.spec.groups}
        if len(kidx) == 0:
            return cand, dmat, pm
        lo, hi = int(kidx.min()), int(kidx.max())
        for start, keys in ix.population.chunks(ix.chunk_rows):
            stop = start + len(keys)
            if stop <= lo or start > hi:
                continue
            sel = torch.nonzero((kidx >= start) & (kidx < stop)).flatten()
            if len(sel) == 0:
                continue
            keys = ix.transform(keys) if ix.transform is not None else keys
            d, P = ix._match(self.prep, r[sel], keys, ix.key_perms(torch.arange(start, stop), keys), kidx[sel] - start)
            dmat[r[sel], c[sel]] = d
            for g, p in P.items():
                pm[g][r[sel], c[sel]] = p
        return cand, dmat, pm

    def finish(self) -> NearestAligned:
        """Align the candidates (and, with ``exact``, more until every query is certified)."""
        if self.seen != self.N:
            raise WeightSpaceError(f"the search saw {self.seen} of {self.N} keys")
        Q, k = self.Q, self.k
        first = self.cand.index
        if self.diverse is not None:  # the groups' best keys not already shortlisted
            extra = self.diverse.index
            seen = (extra.unsqueeze(2) == first.unsqueeze(1)).any(2)
            first = torch.cat([first, extra.masked_fill(seen, -1)], 1)
        i, d, p = self._align(first)
        ev_i, ev_d, ev_p = [i], [d], [p]
        best = d.min(1).values

        def certified_now() -> torch.Tensor:
            rest = self._rest(torch.cat(ev_i, 1))
            return (rest >= best * (1 - _TOL) - _TOL) | (torch.isinf(best) & torch.isinf(rest))

        while self.exact:
            todo = ~certified_now()
            if not todo.any():
                break
            aligned = torch.cat(ev_i, 1)
            low_v, low_i = self.low.value, self.low.index
            could = ~self._taken(aligned) & (low_v < (best * (1 - _TOL) - _TOL).unsqueeze(1)) & todo.unsqueeze(1)
            if not could.any():  # the kept bounds are used up: the next lowest ones, one more pass
                self._refill(torch.nonzero(todo).flatten(), aligned)
                continue
            score = low_v.masked_fill(~could, float("inf"))
            top_s, top = score.topk(min(k, score.shape[1]), dim=1, largest=False)
            nxt = torch.where(torch.isfinite(top_s), low_i.gather(1, top), torch.full_like(top, -1))
            i, d, p = self._align(nxt)
            ev_i.append(i)
            ev_d.append(d)
            ev_p.append(p)
            best = torch.minimum(best, d.min(1).values)
        certified = certified_now()
        all_i, all_d = torch.cat(ev_i, 1), torch.cat(ev_d, 1)
        evaluated = (all_i >= 0).sum(1)
        keep = self.keep
        out_idx = torch.full((Q, keep), -1, dtype=torch.long)
        out_d = torch.full((Q, keep), float("inf"), dtype=torch.float64)
        out_p = {g.id: torch.zeros(Q, keep, g.size, dtype=torch.long) for g in self.index.spec.groups}
        groups = self.index.groups
        for s in range(0, Q, 1024):
            rows = slice(s, min(s + 1024, Q))
            bi, bd = all_i[rows], all_d[rows]
            if groups is not None:  # keep the nearest per_group members of each group (run) only
                gid = groups[bi.clamp_min(0)]
                same = gid.unsqueeze(2) == gid.unsqueeze(1)  # [c, M, M]
                M = bd.shape[1]
                nearer = (bd.unsqueeze(1) < bd.unsqueeze(2)) | (
                    (bd.unsqueeze(1) == bd.unsqueeze(2)) & (torch.arange(M).unsqueeze(0) < torch.arange(M).unsqueeze(1)))
                shadowed = (same & nearer & (bi >= 0).unsqueeze(1)).sum(2) >= self.index.per_group
                rank_d = bd.masked_fill(shadowed, float("inf"))
            else:
                rank_d = bd
            kk = min(keep, rank_d.shape[1])
            _, sel = rank_d.topk(kk, dim=1, largest=False)
            sel_d = rank_d.gather(1, sel)
            out_d[rows, :kk] = sel_d
            out_idx[rows, :kk] = torch.where(torch.isfinite(sel_d), bi.gather(1, sel), torch.full_like(sel, -1))
            for g in out_p:
                allp = torch.cat([p[g][rows] for p in ev_p], 1)
                out_p[g][rows, :kk] = allp.gather(1, sel.unsqueeze(2).expand(-1, -1, allp.shape[2]))
        return NearestAligned(out_idx[:, 0].clone(), out_d[:, 0].clone(), out_idx, out_d, out_p, evaluated,
                              certified)


def exhaustive_nearest_aligned(index: AlignedIndex, queries: WeightSpace, *, exclude: ExcludeFn | None = None,
                               pair_batch: int = 2048) -> tuple[torch.Tensor, torch.Tensor]:
    """Weight matching of every query against every key: ``(distance [Q], index [Q])``.

    The reference the shortlist search is checked against (``Q x N`` problems, streamed
    over the keys).
    """
    prep = index.prepare(queries)
    Q = len(queries)
    best = RunningBest(Q)
    for start, keys in index.chunks():
        C = len(keys)
        kperm = index.key_perms(torch.arange(start, start + C), keys)
        d, _ = index._match(prep, torch.arange(Q).repeat_interleave(C), keys, kperm, torch.arange(C).repeat(Q),
                            batch=pair_batch)
        d = d.reshape(Q, C)
        if exclude is not None:
            d = d.masked_fill(exclude(torch.arange(Q), start, start + C), float("inf"))
        v, a = d.min(1)
        best.update(v, torch.where(torch.isinf(v), torch.full_like(a, -1), a + start))
    return best.value, best.index
