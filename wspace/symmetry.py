"""The symmetry group of a weight space, and its action on :class:`WeightSpace`.

* Hidden-neuron permutations: one permutation per group of the spec (residual
  streams included), acting on every axis that carries the group.
* Diagonal rescalings: positive scaling of neurons behind positively homogeneous
  activations (ReLU, LeakyReLU) and sign flips behind odd ones (tanh, sine).
* Phase shifts of sine neurons (SIRENs): bias ``+ k pi / w0`` with the outgoing weights
  times ``(-1)^k`` (:func:`shift_phases`).
* Canonical forms that remove the non-permutation part of the group, so that weight
  matching (a permutation search) can align any two networks: :func:`canonicalize_signs`,
  :func:`canonicalize_phases` (:func:`canonical_frame` also returns the way back),
  :func:`canonicalize_scales` and :func:`canonicalize_symmetries` (all of them).

Convention: ``permute(ws, perm)`` re-indexes each permuted axis as
``new[..., i, ...] = old[..., perm[g][b, i], ...]``. All functions are vectorized
over the batch of networks.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator, Mapping

import torch

from .errors import WeightSpaceError
from .space import WeightSpace
from .spec import Op, WeightSpaceSpec


@dataclass
class Permutation:
    """One permutation per group: ``perms[g]`` is a ``LongTensor[B, n_g]``."""

    perms: dict[int, torch.Tensor]

    def __getitem__(self, gid: int) -> torch.Tensor:
        return self.perms[gid]

    def __iter__(self) -> Iterator[int]:
        return iter(self.perms)

    def items(self):
        return self.perms.items()

    @property
    def batch_size(self) -> int:
        return next(iter(self.perms.values())).shape[0] if self.perms else 0

    def to(self, device: torch.device | str) -> "Permutation":
        return Permutation({g: p.to(device) for g, p in self.perms.items()})

    def select(self, idx) -> "Permutation":
        """Sub-batch of the permutations (``idx`` as for tensor indexing)."""
        return Permutation({g: p[idx] for g, p in self.perms.items()})

    def is_identity(self) -> torch.Tensor:
        """``BoolTensor[B]``: which permutations are the identity."""
        out = None
        for p in self.perms.values():
            eq = (p == torch.arange(p.shape[1], device=p.device)).all(1)
            out = eq if out is None else out & eq
        return out

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Permutation) or set(self.perms) != set(other.perms):
            return False
        return all(torch.equal(self.perms[g], other.perms[g]) for g in self.perms)


def identity_permutation(spec: WeightSpaceSpec, batch_size: int, device=None) -> Permutation:
    return Permutation({g.id: torch.arange(g.size, device=device).expand(batch_size, g.size).clone() for g in spec.groups})


def random_permutation(
    spec: WeightSpaceSpec, batch_size: int, generator: torch.Generator | None = None, device=None
) -> Permutation:
    """A uniformly random permutation of every group, independently per network."""
    return Permutation(
        {
            g.id: torch.argsort(torch.rand(batch_size, g.size, generator=generator), dim=1).to(device)
            for g in spec.groups
        }
    )


def _gather_axis(t: torch.Tensor, axis: int, idx: torch.Tensor) -> torch.Tensor:
    """``t`` is ``[B, *shape]``; permute axis ``axis`` (of the shape) with ``idx [B, n]``."""
    d = axis + 1
    view = [idx.shape[0]] + [1] * (t.dim() - 1)
    view[d] = idx.shape[1]
    return t.gather(d, idx.reshape(view).expand_as(t))


def _check(ws: WeightSpace, groups: Mapping[int, torch.Tensor], what: str) -> None:
    for g, p in groups.items():
        if g >= len(ws.spec.groups):
            raise WeightSpaceError(f"{what} names group {g}, but the spec has {len(ws.spec.groups)} groups")
        if p.shape != (len(ws), ws.spec.groups[g].size):
            raise WeightSpaceError(
                f"{what} for group {g} has shape {tuple(p.shape)}, expected [{len(ws)}, {ws.spec.groups[g].size}]"
            )


def permute(ws: WeightSpace, perm: Permutation) -> WeightSpace:
    """Apply ``perm`` to every network of ``ws`` (function-preserving when complete)."""
    _check(ws, perm.perms, "permutation")
    out = []
    for p, t in zip(ws.spec.params, ws.tensors):
        for axis, g in enumerate(p.axes):
            if g is not None and g in perm.perms:
                t = _gather_axis(t, axis, perm.perms[g].to(t.device))
        out.append(t)
    return WeightSpace(ws.spec, out)


def compose(first: Permutation, then: Permutation) -> Permutation:
    """The permutation equal to applying ``first`` and then ``then``:
    ``permute(ws, compose(p, q)) == permute(permute(ws, p), q)``."""
    return Permutation({g: first.perms[g].gather(1, then.perms[g]) for g in first.perms})


def inverse(perm: Permutation) -> Permutation:
    """``permute(permute(ws, p), inverse(p)) == ws``."""
    return Permutation({g: torch.argsort(p, dim=1) for g, p in perm.perms.items()})


# ---------------------------------------------------------------- rescaling
def scale_neurons(ws: WeightSpace, factors: Mapping[int, torch.Tensor], *, check: bool = True) -> WeightSpace:
    """Multiply the neurons of group ``g`` by ``factors[g]`` (``[B, n_g]``, nonzero).

    Incoming weights and biases are multiplied, outgoing weights divided, so the
    function is preserved when the activation allows it: positive factors need the
    group's ``"scale"`` symmetry, negative ones its ``"sign"`` symmetry. With
    ``check=False`` any factors are applied (a deliberate function change).
    """
    _check(ws, factors, "scaling")
    if check:
        for g, d in factors.items():
            sym = ws.spec.groups[g].symmetries
            if "scale" not in sym and not torch.all(d.abs() == 1):
                raise WeightSpaceError(f"group {g} does not allow rescaling (symmetries: {sym})")
            if "sign" not in sym and bool((d < 0).any()):
                raise WeightSpaceError(f"group {g} does not allow sign flips (symmetries: {sym})")
    out = []
    for p, t in zip(ws.spec.params, ws.tensors):
        for axis, g in enumerate(p.axes):
            if g is None or g not in factors:
                continue
            d = factors[g].to(device=t.device, dtype=t.dtype)
            view = [d.shape[0]] + [1] * (t.dim() - 1)
            view[axis + 1] = d.shape[1]
            # axis 0 of a weight or bias is the layer's output neurons; axis 1 its inputs
            t = t * d.reshape(view) if axis == 0 else t / d.reshape(view)
        out.append(t)
    return WeightSpace(ws.spec, out)


def random_scaling(
    ws: WeightSpace, low: float = 0.5, high: float = 2.0, generator: torch.Generator | None = None
) -> WeightSpace:
    """Positive rescaling (log-uniform in ``[low, high]``) of every group that allows it."""
    factors = {}
    for g in ws.spec.groups:
        if "scale" in g.symmetries:
            u = torch.rand(len(ws), g.size, generator=generator)
            factors[g.id] = torch.exp(torch.log(torch.tensor(low)) + u * (torch.log(torch.tensor(high / low))))
    return scale_neurons(ws, factors) if factors else ws


def random_sign_flip(ws: WeightSpace, p: float = 0.5, generator: torch.Generator | None = None) -> WeightSpace:
    """Flip the sign of each neuron of every group that allows it, with probability ``p``."""
    factors = {}
    for g in ws.spec.groups:
        if "sign" in g.symmetries:
            flip = torch.rand(len(ws), g.size, generator=generator) < p
            factors[g.id] = 1.0 - 2.0 * flip.float()
    return scale_neurons(ws, factors) if factors else ws


def canonical_signs(ws: WeightSpace) -> dict[int, torch.Tensor]:
    """The sign flips (``{group: [B, n_g]`` of +-1}) that :func:`canonicalize_signs` applies:
    each neuron of a group with the ``"sign"`` symmetry gets the sign of its bias, or, where
    the bias is zero or absent, of the sum of its incoming weights (ties: +1). Groups are
    decided in order, each after the flips of the earlier ones (which flip columns of its
    incoming weights), so the result is idempotent for bias-free networks too."""
    factors: dict[int, torch.Tensor] = {}
    signed = [g.id for g in ws.spec.groups if "sign" in g.symmetries]
    cur = ws
    for g in signed:
        score = bias = None
        for p, t in zip(cur.spec.params, cur.tensors):
            if not p.axes or p.axes[0] != g:  # axis 0 of a weight / bias: the neurons it produces
                continue
            if len(p.axes) == 1:
                bias = t
            else:
                row = t.reshape(t.shape[0], t.shape[1], -1).sum(-1)
                score = row if score is None else score + row
        key = torch.zeros(len(ws), ws.spec.groups[g].size, dtype=ws.tensors[0].dtype, device=ws.device)
        if score is not None:
            key = torch.sign(score)
        if bias is not None:
            key = torch.where(bias != 0, torch.sign(bias), key)
        factors[g] = torch.where(key < 0, -1.0, 1.0).to(ws.tensors[0].dtype)
        cur = scale_neurons(cur, {g: factors[g]})
    return factors


def canonicalize_signs(ws: WeightSpace) -> WeightSpace:
    """A canonical representative under sign flips (function-preserving): every neuron of
    a sign-symmetric group (tanh, sine) is flipped so that its bias is positive (see
    :func:`canonical_signs`). Permutation-equivariant, so after it two networks differ by
    a permutation only, which weight matching can then undo; idempotent."""
    factors = canonical_signs(ws)
    return scale_neurons(ws, factors) if factors else ws


def canonical_scales(ws: WeightSpace) -> dict[int, torch.Tensor]:
    """The positive factors (``{group: [B, n_g]}``) that :func:`canonicalize_scales` applies,
    computed group by group in order (each after the previous ones are applied): every
    neuron of a group with the ``"scale"`` symmetry (ReLU, leaky ReLU, max pooling) gets
    unit norm of its incoming weights and bias, counting only the layers writing it whose
    inputs are network inputs or earlier groups (for a residual stream: the layer that opens
    it, not the blocks that add to it, whose inputs come later). Dead neurons: factor 1."""
    spec = ws.spec
    factors: dict[int, torch.Tensor] = {}
    cur = ws
    for grp in spec.groups:
        if "scale" not in grp.symmetries:
            continue
        sq = None
        for layer in spec.layers:
            if layer.out_group != grp.id or (layer.in_group is not None and layer.in_group >= grp.id):
                continue
            for i in (layer.weight, layer.bias):
                if i is None:
                    continue
                t = cur.tensors[i]
                part = t.reshape(t.shape[0], t.shape[1], -1).pow(2).sum(-1)
                sq = part if sq is None else sq + part
        if sq is None:
            continue
        norm = sq.sqrt()
        f = torch.where(norm > 0, 1.0 / norm.clamp_min(torch.finfo(norm.dtype).tiny), torch.ones_like(norm))
        factors[grp.id] = f
        cur = scale_neurons(cur, {grp.id: f})
    return factors


def canonicalize_scales(ws: WeightSpace) -> WeightSpace:
    """A canonical representative under positive per-neuron rescaling (function-preserving
    for ReLU-like groups): each such neuron's incoming weights and bias get unit norm, the
    scale moving onto its outgoing weights (see :func:`canonical_scales`). For MLPs, CNNs
    and residual networks (streams included). Permutation-equivariant; idempotent."""
    factors = canonical_scales(ws)
    return scale_neurons(ws, factors) if factors else ws


CanonicalTransform = tuple[dict[int, torch.Tensor], dict[int, torch.Tensor], dict[int, torch.Tensor]]


def canonical_transform(ws: WeightSpace) -> tuple[WeightSpace, CanonicalTransform]:
    """``(canonical network, (shifts, flips, scales))``: :func:`canonicalize_symmetries` and
    the transform that got there, undone by :func:`from_canonical`."""
    c, shifts, flips = canonical_frame(ws)
    scales = canonical_scales(c)
    return (scale_neurons(c, scales) if scales else c), (shifts, flips, scales)


def from_canonical(ws: WeightSpace, transform: CanonicalTransform) -> WeightSpace:
    """Undo :func:`canonical_transform`'s ``transform``. Applied to another network in the
    same canonical frame (e.g. aligned onto it), it moves that network into the first one's
    own frame: its scales, signs and phases."""
    shifts, flips, scales = transform
    if scales:
        ws = scale_neurons(ws, {g: 1.0 / f for g, f in scales.items()})
    return from_canonical_frame(ws, shifts, flips)


def canonicalize_symmetries(ws: WeightSpace) -> WeightSpace:
    """A canonical representative under every non-permutation symmetry the spec allows:
    SIREN phase shifts and sign flips (:func:`canonicalize_phases`), then positive
    rescaling (:func:`canonicalize_scales`). After it, two networks related by any mix of
    permutations, sign flips, phase shifts and rescalings differ by a permutation only,
    which weight matching undoes."""
    return canonical_transform(ws)[0]


def _first_act(ops: tuple[Op, ...], start: int) -> Op | None:
    """The first op after position ``start`` that is not dropout, if it is an activation."""
    for op in ops[start + 1:]:
        if op.kind == "dropout":
            continue
        return op if op.kind == "act" else None
    return None


def sine_groups(spec: WeightSpaceSpec) -> dict[int, tuple[int, float]]:
    """``{group id: (layer index, w0)}`` for the groups whose neurons feed straight into
    ``sin(w0 x)`` and that allow sign flips (so the sign change of a shifted bias can be
    moved onto the outgoing weights). Output neurons and residual streams are excluded."""
    found: dict[int, tuple[int, float]] = {}

    def rec(ops: tuple[Op, ...]) -> None:
        for i, op in enumerate(ops):
            if op.kind == "sequential":
                rec(op.children)
            elif op.kind == "residual":
                for c in op.children:  # the block: one "sequential" op
                    rec(c.children if c.kind == "sequential" else (c,))
            if op.kind not in ("linear", "conv") or len(op.params) < 2:
                continue
            act = _first_act(ops, i)
            if act is None or act.attr("name") != "sine":
                continue
            layer = spec.layers[spec.params[op.params[0]].layer]
            g = layer.out_group
            if g is None:
                continue
            group = spec.groups[g]
            if group.stream or "sign" not in group.symmetries:
                continue
            found[g] = (layer.index, float(act.attr("w0")))

    rec(spec.program)
    return found


def shift_phases(ws: WeightSpace, shifts: Mapping[int, torch.Tensor]) -> WeightSpace:
    """Shift the phase of sine neurons: group ``g``'s biases ``+= k pi / w0`` with integer
    ``k = shifts[g]`` (``[B, n_g]``), and its outgoing weights times ``(-1)^k``.

    ``sin(w0 (z + k pi / w0)) = (-1)^k sin(w0 z)``, so the function is preserved (on raw
    weights). Only groups from :func:`sine_groups` may be shifted.
    """
    groups = sine_groups(ws.spec)
    _check(ws, shifts, "phase shift")
    spec, tensors = ws.spec, list(ws.tensors)
    for g, k in shifts.items():
        if g not in groups:
            raise WeightSpaceError(f"group {g} does not feed a sine activation: its bias cannot be phase-shifted")
        layer_idx, w0 = groups[g]
        k = k.to(device=ws.device)
        if k.is_floating_point() and not torch.equal(k, k.round()):
            raise WeightSpaceError(f"phase shifts of group {g} must be integers (multiples of pi / w0)")
        k = k.long()
        b = spec.layers[layer_idx].bias
        tensors[b] = tensors[b] + (k.to(torch.float64) * (math.pi / w0)).to(tensors[b].dtype)
        sign = (1 - 2 * (k % 2)).to(ws.dtype)  # (-1)^k; k % 2 is 0 or 1 for negative k too
        for i, p in enumerate(spec.params):  # outgoing weights: input axis carries the group
            if p.role == "weight" and len(p.axes) > 1 and p.axes[1] == g:
                view = [len(ws), 1, sign.shape[1]] + [1] * (tensors[i].dim() - 3)
                tensors[i] = tensors[i] * sign.reshape(view)
    return WeightSpace(spec, tensors)


def canonical_frame(ws: WeightSpace, phases: bool = True
                    ) -> tuple[WeightSpace, dict[int, torch.Tensor], dict[int, torch.Tensor]]:
    """``(canonical network, shifts, flips)``: the network with the non-permutation part of
    its symmetry group removed, and the phase shifts and sign flips that got it there, in
    that order (undo with :func:`from_canonical_frame`).

    With ``phases`` (default), each sine neuron is first shifted by ``-k`` (``k = round(w0
    b / pi)``, :func:`shift_phases`) so that its phase ``w0 b`` lands in ``[-pi/2, pi/2]``;
    then every sign-symmetric neuron gets the flips of :func:`canonical_signs` of the shifted
    network, which puts sine phases into ``[0, pi/2]``. Without ``phases`` the shifts are
    empty and this is :func:`canonicalize_signs`.
    """
    shifts = {}
    if phases:
        for g, (layer_idx, w0) in sine_groups(ws.spec).items():
            bias = ws.tensors[ws.spec.layers[layer_idx].bias]
            shifts[g] = -torch.round(bias.to(torch.float64) * (w0 / math.pi)).long()
    shifted = shift_phases(ws, shifts) if shifts else ws
    flips = canonical_signs(shifted)
    return (scale_neurons(shifted, flips) if flips else shifted), shifts, flips


def canonicalize_phases(ws: WeightSpace) -> WeightSpace:
    """A canonical representative under SIREN bias shifts *and* sign flips (function-preserving).

    Each sine neuron's phase ``w0 b`` is brought into ``[0, pi/2]``: shifted by a multiple
    of ``pi`` into ``[-pi/2, pi/2]`` (:func:`shift_phases`), then sign-flipped to a
    positive bias. Other sign-symmetric neurons (tanh) get :func:`canonicalize_signs`.
    After it, two networks related by any composition of permutations, sign flips and
    bias shifts differ by a permutation only. Permutation-equivariant; idempotent.
    """
    return canonical_frame(ws)[0]


def from_canonical_frame(ws: WeightSpace, shifts: Mapping[int, torch.Tensor],
                         flips: Mapping[int, torch.Tensor]) -> WeightSpace:
    """Undo :func:`canonical_frame` given its ``(shifts, flips)``: the flips (involutions),
    then the opposite shifts. Applied to another network in the same canonical frame, it
    moves that network into the first one's own frame."""
    ws = scale_neurons(ws, flips) if flips else ws
    return shift_phases(ws, {g: -k for g, k in shifts.items()}) if shifts else ws


def random_symmetry(ws: WeightSpace, generator: torch.Generator | None = None) -> WeightSpace:
    """A random element of the full group the spec allows: permutation, then the
    rescalings / sign flips the activations allow."""
    ws = permute(ws, random_permutation(ws.spec, len(ws), generator=generator, device=ws.device))
    ws = random_scaling(ws, generator=generator)
    return random_sign_flip(ws, generator=generator)
