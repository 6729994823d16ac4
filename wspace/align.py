"""Permutation alignment of networks: Git Re-Basin weight matching, batched over pairs.

Weight matching (Ainsworth, Hayase & Srinivasa, ICLR 2023) looks for the hidden-neuron
permutation ``P`` that brings network B as close as possible to network A, i.e.
maximizes ``sum over params <A, permute(B, P)>`` (equivalently minimizes the L2
distance, since permutations preserve norms). The problem is NP-hard; coordinate
descent visits the spec's permutation groups in random order and, holding the others
fixed, solves each group exactly as a linear assignment problem.

Everything is batched over ``B`` pairs: the cost matrices of all pairs are one batched
matmul per parameter axis; only the assignment solver (``scipy``) runs per pair.

Example::

    P = weight_matching(ws_a, ws_b)          # ws_b[b] -> ws_a[b], or onto ws_a[0] if len(ws_a) == 1
    ws_b_aligned = permute(ws_b, P)          # same functions as ws_b, close to ws_a
    d = aligned_distance(ws_a, ws_b)         # [B] L2 distances after alignment
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from .errors import WeightSpaceError
from .space import WeightSpace
from .symmetry import Permutation, identity_permutation, permute

__all__ = ["weight_matching", "weight_matching_to_reference", "align", "aligned_distance"]

_REL_TOL = 1e-12  # a group "improves" when the objective grows by more than this, relatively


def _take(t: torch.Tensor, dim: int, idx: torch.Tensor) -> torch.Tensor:
    """Re-index tensor dim ``dim`` of ``t`` ([B, ...]) with per-network indices ``idx`` [B, n]."""
    view = [idx.shape[0]] + [1] * (t.dim() - 1)
    view[dim] = idx.shape[1]
    return t.gather(dim, idx.reshape(view).expand_as(t))


def _check_inputs(ws_a: WeightSpace, ws_b: WeightSpace, init: Permutation | None, max_iter: int) -> None:
    if not isinstance(ws_a, WeightSpace) or not isinstance(ws_b, WeightSpace):
        raise WeightSpaceError("weight matching needs two WeightSpace objects")
    if not ws_a.spec.same_space(ws_b.spec):
        raise WeightSpaceError(
            f"cannot align different architectures: {ws_a.spec!r} and {ws_b.spec!r}"
        )
    if len(ws_a) not in (1, len(ws_b)):
        raise WeightSpaceError(
            f"ws_a has {len(ws_a)} networks and ws_b {len(ws_b)}; ws_a must have 1 (broadcast) or the same number"
        )
    if not isinstance(max_iter, int) or max_iter < 0:
        raise WeightSpaceError(f"max_iter must be a non-negative integer, got {max_iter!r}")
    if init is not None:
        for g in ws_b.spec.groups:
            if g.id not in init.perms:
                raise WeightSpaceError(f"init permutation lacks group {g.id}")
            if tuple(init.perms[g.id].shape) not in ((len(ws_b), g.size), (1, g.size)):
                raise WeightSpaceError(
                    f"init permutation for group {g.id} has shape {tuple(init.perms[g.id].shape)}, "
                    f"expected [{len(ws_b)}, {g.size}]"
                )


def _assign(cost: torch.Tensor) -> torch.Tensor:
    """``[B, n]`` maximum-weight assignment of every ``[n, n]`` cost matrix (the one per-pair
    step: scipy has no batched solver)."""
    c = cost.detach().cpu().numpy()
    return torch.from_numpy(np.stack([linear_sum_assignment(c[b], maximize=True)[1] for b in range(len(c))]))


def _objective(ws_a: WeightSpace, ws_b: WeightSpace, perm: Permutation, dtype: torch.dtype) -> torch.Tensor:
    """``[B]`` ``sum <A, permute(B, P)>`` (A broadcast when it is one network)."""
    aligned = permute(WeightSpace(ws_b.spec, [t.detach().to(dtype) for t in ws_b.tensors]), perm)
    B = len(ws_b)
    return sum((a.detach().to(device=t.device, dtype=dtype) * t).reshape(B, -1).sum(1)
               for a, t in zip(ws_a.tensors, aligned.tensors))


def _forward_matching(ws_a: WeightSpace, ws_b: WeightSpace, dtype: torch.dtype) -> dict[int, torch.Tensor]:
    """Permutations matched group by group in order, each on the parameters that produce
    it (the group on axis 0) and whose other permuted axes are earlier groups, already
    matched; parameters reading later groups are left out (groups without such parameters
    keep the identity)."""
    spec = ws_b.spec
    B, Ba = len(ws_b), len(ws_a)
    perms = {g: p for g, p in identity_permutation(spec, B, device=ws_b.device).perms.items()}
    for grp in spec.groups:
        g, n = grp.id, grp.size
        if n < 2:
            continue
        cost = None
        for pi, p in enumerate(spec.params):
            if not p.axes or p.axes[0] != g or any(h is not None and h >= g for h in p.axes[1:]):
                continue
            t = ws_b.tensors[pi].detach().to(dtype)
            for ax, h in enumerate(p.axes[1:], start=1):
                if h is not None:
                    t = _take(t, ax + 1, perms[h])
            a = ws_a.tensors[pi].detach().to(device=t.device, dtype=dtype).reshape(Ba, n, -1)
            term = torch.matmul(a, t.reshape(B, n, -1).transpose(1, 2))
            cost = term if cost is None else cost + term
        if cost is None:
            continue
        perms[g] = _assign(cost).to(ws_b.device)
    return perms


def weight_matching(
    ws_a: WeightSpace,
    ws_b: WeightSpace,
    *,
    max_iter: int = 100,
    init: Permutation | None = None,
    generator: torch.Generator | None = None,
    return_stats: bool = False,
    dtype: torch.dtype = torch.float64,
    forward_start: bool = True,
) -> Permutation | tuple[Permutation, dict[str, torch.Tensor]]:
    """Git Re-Basin weight matching of ``ws_b[b]`` onto ``ws_a[b]``, for every pair at once.

    Returns the :class:`~wspace.symmetry.Permutation` ``P`` (``[B, n_g]`` per group)
    such that ``permute(ws_b, P)`` computes the same functions as ``ws_b`` while
    maximizing ``sum over params <ws_a, permute(ws_b, P)>``, i.e. minimizing the L2
    distance to ``ws_a``. With ``len(ws_a) == 1`` every network of ``ws_b`` is matched
    to that one reference (aligning a zoo onto one network).

    Coordinate descent: each sweep visits the groups in a random order (one order for
    all pairs); for group ``g`` the cost matrix is ``C[i, j] = sum over every axis
    carrying g of <A[.., i, ..], B'[.., j, ..]>``, where ``B'`` is ``ws_b`` with every
    *other* permuted axis re-indexed by its current permutation (including a second
    occurrence of ``g`` itself, e.g. a residual-stream square matrix, whose term is
    thus linearized as in Git Re-Basin). The candidate is scored on the true objective
    (square terms evaluated exactly) and kept only if it improves it by more than
    ``1e-12`` relatively, so the objective never decreases, the descent cannot cycle,
    and the aligned distance never exceeds the distance under ``init``. A pair stops after a sweep in which no group
    improved; converged pairs are skipped in later sweeps.

    Args:
        ws_a: the reference networks (``B`` or 1).
        ws_b: the networks to permute (``B``), same architecture.
        max_iter: maximum number of sweeps (0 returns ``init`` as given).
        init: starting permutation (identity by default), ``[B, n_g]`` or ``[1, n_g]``.
        generator: random source of the group visiting order (CPU generator).
        return_stats: also return a dict with ``sweeps`` (``LongTensor[B]``, sweeps run
            per pair), ``converged`` (``BoolTensor[B]``) and ``objective``
            (``Tensor[B]``, final ``sum <A, permute(B, P)>``).
        dtype: precision of the cost matrices (float64 so that the relative tolerance
            is meaningful; float32 is faster for large networks).
        forward_start: also try the forward matching (:func:`_forward_matching`: groups in
            order, each matched on its incoming weights alone, whose other axes are inputs
            or earlier groups) as a start and keep, per pair, the start with the higher
            objective. Coordinate descent from the identity can stall in a local optimum
            even for an exact permuted copy; the forward matching finds that copy's
            permutation whenever its neurons' incoming weights differ.

    Raises:
        WeightSpaceError: different architectures, incompatible batch sizes, bad init.
    """
    _check_inputs(ws_a, ws_b, init, max_iter)
    spec = ws_b.spec
    B, Ba = len(ws_b), len(ws_a)
    device = ws_b.device

    if init is None:
        perms = identity_permutation(spec, B, device=device).perms
    else:
        perms = {g: p.to(device).expand(B, -1).clone() for g, p in init.perms.items()}
    if forward_start and max_iter > 0:  # start each pair from the better of init and the forward matching
        fwd = _forward_matching(ws_a, ws_b, dtype)
        better = _objective(ws_a, ws_b, Permutation(fwd), dtype) > _objective(ws_a, ws_b, Permutation(perms), dtype)
        perms = {g: torch.where(better.unsqueeze(1), fwd[g].to(device), p) for g, p in perms.items()}

    # Where each group appears: (param index, axis in the param's shape).
    occurrences: dict[int, list[tuple[int, int]]] = {g.id: [] for g in spec.groups}
    for pi, p in enumerate(spec.params):
        for ax, g in enumerate(p.axes):
            if g is not None:
                occurrences[g].append((pi, ax))
    # Groups of size 1 have nothing to match.
    groups = [g.id for g in spec.groups if g.size > 1 and occurrences[g.id]]

    a_tensors = [t.detach().to(device=device, dtype=dtype) for t in ws_a.tensors]
    b_tensors = [t.detach().to(dtype=dtype) for t in ws_b.tensors]
    # A never changes: pre-arrange it as [Ba, n_g, rest] for every occurrence.
    a_flat = {
        (pi, ax): a_tensors[pi].movedim(ax + 1, 1).reshape(Ba, spec.params[pi].shape[ax], -1)
        for g in groups
        for pi, ax in occurrences[g]
    }

    sweeps = torch.zeros(B, dtype=torch.long, device=device)
    active = torch.ones(B, dtype=torch.bool, device=device)
    converged = torch.zeros(B, dtype=torch.bool, device=device)

    for _ in range(max_iter if groups else 0):
        idx = active.nonzero().squeeze(1)
        nb = idx.numel()
        if nb == 0:
            break
        full = nb == B
        # Sub-batch of the still-active pairs (no copy while all are active).
        b_sub = b_tensors if full else [t[idx] for t in b_tensors]
        cur = perms if full else {g: p[idx] for g, p in perms.items()}
        improved = torch.zeros(nb, dtype=torch.bool, device=device)

        order = torch.randperm(len(groups), generator=generator).tolist()
        for gi in order:
            g = groups[gi]
            n = spec.group(g).size
            linear = None  # cost from params carrying g once: exact, linear in P_g
            surrogate = None  # cost from params carrying g twice: linearized around the current P_g
            squares: set[int] = set()
            for pi, ax in occurrences[g]:
                axes = spec.params[pi].axes
                t = b_sub[pi]
                for ax2, h in enumerate(axes):
                    if ax2 != ax and h is not None:  # includes a second occurrence of g itself
                        t = _take(t, ax2 + 1, cur[h])
                t = t.movedim(ax + 1, 1).reshape(nb, n, -1)
                a = a_flat[(pi, ax)]
                if Ba > 1 and not full:
                    a = a[idx]
                term = torch.matmul(a, t.transpose(1, 2))  # [nb, n, n]; broadcasts when Ba == 1
                if axes.count(g) == 1:
                    linear = term if linear is None else linear + term
                else:
                    surrogate = term if surrogate is None else surrogate + term
                    squares.add(pi)
            cost = linear if surrogate is None else surrogate if linear is None else linear + surrogate

            new_t = _assign(cost).to(device)

            def objective(p_g: torch.Tensor) -> torch.Tensor:
                """The part of the true objective that depends on P_g (other groups fixed)."""
                val = torch.zeros(nb, dtype=dtype, device=device)
                if linear is not None:
                    val = val + linear.gather(2, p_g.unsqueeze(2)).sum((1, 2))
                for pi in squares:  # quadratic in P_g: evaluate exactly
                    t = b_sub[pi]
                    for ax2, h in enumerate(spec.params[pi].axes):
                        if h is not None:
                            t = _take(t, ax2 + 1, p_g if h == g else cur[h])
                    a = a_tensors[pi] if Ba == 1 or full else a_tensors[pi][idx]
                    val = val + (a * t).reshape(nb, -1).sum(1)
                return val

            old_val, new_val = objective(cur[g]), objective(new_t)
            # Keep the candidate only where it truly improves: the linearized cost of a
            # (g, g) square matrix can otherwise cycle; this keeps the objective monotone.
            gain = new_val - old_val > _REL_TOL * torch.maximum(old_val.abs(), new_val.abs())
            improved |= gain
            cur[g] = torch.where(gain.unsqueeze(1), new_t, cur[g])

        if not full:
            for g in groups:
                perms[g][idx] = cur[g]
        sweeps[idx] += 1
        done = idx[~improved]
        converged[done] = True
        active[done] = False

    perm = Permutation(perms)
    if not return_stats:
        return perm
    objective = _objective(ws_a, ws_b, perm, dtype)
    if not groups:  # nothing to permute: trivially converged
        converged[:] = True
    stats: dict[str, Any] = {"sweeps": sweeps, "converged": converged, "objective": objective}
    return perm, stats


def weight_matching_to_reference(ws: WeightSpace, ref: WeightSpace, **kwargs: Any) -> Permutation:
    """Permutations aligning every network of ``ws`` onto the single network ``ref``.

    Same as ``weight_matching(ref, ws)`` with ``len(ref) == 1`` (broadcast); provided
    for readability when canonicalizing a zoo against one reference.
    """
    if len(ref) != 1:
        raise WeightSpaceError(f"the reference must be one network, got a batch of {len(ref)}")
    return weight_matching(ref, ws, **kwargs)


def align(
    ws_b: WeightSpace,
    ws_a: WeightSpace,
    *,
    max_iter: int = 100,
    init: Permutation | None = None,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float64,
) -> WeightSpace:
    """``ws_b`` permuted onto ``ws_a`` (same functions as ``ws_b``, close to ``ws_a``).

    ``ws_a`` has ``len(ws_b)`` networks (pairwise) or 1 (one reference for all).
    """
    perm = weight_matching(ws_a, ws_b, max_iter=max_iter, init=init, generator=generator, dtype=dtype)
    return permute(ws_b, perm)


def aligned_distance(ws_a: WeightSpace, ws_b: WeightSpace, **kwargs: Any) -> torch.Tensor:
    """``Tensor[B]``: L2 distance between ``ws_a`` and ``ws_b`` after aligning ``ws_b`` onto ``ws_a``.

    Keyword arguments go to :func:`align`. Never larger than the raw distance (up to
    float rounding) with the default identity start.
    """
    aligned = align(ws_b, ws_a, **kwargs)
    diff = ws_a.flatten().to(aligned.device) - aligned.flatten()  # [1 or B, D] - [B, D] broadcasts
    return diff.norm(dim=1)
