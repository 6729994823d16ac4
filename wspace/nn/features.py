"""Weight-space features: the tensor format every equivariant layer reads and writes.

A *weight-space feature* for ``B`` networks of one spec is a tuple with one tensor
per spec parameter, ``feats[i]`` of shape ``[B, C * F_i, *kept_sizes_i]``:

* the *kept* axes are the axes that a permutation group acts on, in parameter order
  (at most ``(out, in)`` for a weight);
* every other axis is *folded* into the channel axis, channel-major: a conv weight
  ``[out, in, kh, kw]`` with ``C`` channels becomes ``[B, C * kh * kw, out, in]``, and
  a first-layer weight ``[h, n_in]`` becomes ``[B, C * n_in, h]``. ``F_i`` (the
  *fold factor*) is the product of the folded sizes. Folding is exact: nothing acts
  on those axes, so any linear map across them is allowed (NFN's HNP layers do the
  same for the network's inputs and outputs).

Which axes are kept is the *mode* of the :class:`FeatureLayout`:

* ``"hnp"`` (hidden-neuron permutations, the exact symmetry of the spec): the spec's
  groups only; network inputs, outputs and kernel positions are folded.
* ``"np"`` (NFN's neuron permutations): the network's input units and output units
  become two extra permutable groups (ids ``len(spec.groups)`` and the next one), as
  in NFN's NP layers; only kernel positions are folded. This is a *larger* group
  than the true symmetry; NP models add learned input/output embeddings
  (:class:`wspace.nn.nfn.IOEmbedding`) to break it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Sequence

import torch

from ..errors import WeightSpaceError
from ..space import WeightSpace
from ..spec import WeightSpaceSpec
from ..symmetry import Permutation

Features = tuple[torch.Tensor, ...]

MODES = ("hnp", "np")


@dataclass(frozen=True)
class TensorLayout:
    """How one parameter tensor becomes a feature tensor.

    Attributes:
        key: the parameter's state_dict key.
        role: ``"weight"`` or ``"bias"``.
        shape: the parameter's shape (no batch axis).
        fold: parameter axes folded into channels, in order.
        keep: parameter axes kept as feature axes, in order.
        groups: group id of each kept axis.
        sizes: size of each kept axis.
        factor: product of the folded sizes (channels per feature channel).
    """

    key: str
    role: str
    shape: tuple[int, ...]
    fold: tuple[int, ...]
    keep: tuple[int, ...]
    groups: tuple[int, ...]
    sizes: tuple[int, ...]
    factor: int


class FeatureLayout:
    """The feature layout of a spec in one mode (build with :func:`feature_layout`).

    Attributes:
        spec: the architecture.
        mode: ``"hnp"`` or ``"np"``.
        tensors: one :class:`TensorLayout` per spec parameter.
        group_sizes: size of every group that appears on a kept axis (spec groups and,
            in ``"np"`` mode, the I/O groups).
        io_groups: ``{"input": gid, "output": gid}`` in ``"np"`` mode (empty in ``"hnp"``).
    """

    def __init__(self, spec: WeightSpaceSpec, mode: str = "hnp"):
        if mode not in MODES:
            raise WeightSpaceError(f"unknown feature mode '{mode}'; expected one of {MODES}")
        self.spec = spec
        self.mode = mode
        n_groups = len(spec.groups)
        self.io_groups: dict[str, int] = {}
        if mode == "np":
            self.io_groups = {"input": n_groups, "output": n_groups + 1}
        sizes: dict[int, int] = {g.id: g.size for g in spec.groups}
        tensors = []
        for p in spec.params:
            if len(p.axes) != len(p.shape):
                raise WeightSpaceError(f"spec gives {len(p.axes)} axis groups for a {len(p.shape)}-d tensor", tensor=p.key)
            keep, groups = [], []
            for a, g in enumerate(p.axes):
                if g is None and mode == "np" and a < (2 if p.role == "weight" else 1):
                    # The only fixed neuron sets are the network's inputs (axis 1 of the
                    # first layer) and its outputs (every other fixed out/in axis).
                    g = self.io_groups["input"] if (p.role == "weight" and a == 1 and p.layer == 0) else self.io_groups["output"]
                if g is None:
                    continue
                if g in sizes and sizes[g] != p.shape[a]:
                    raise WeightSpaceError(
                        f"axis {a} has size {p.shape[a]} but its group {g} has size {sizes[g]}", tensor=p.key
                    )
                sizes[g] = p.shape[a]
                keep.append(a)
                groups.append(g)
            fold = tuple(a for a in range(len(p.shape)) if a not in keep)
            tensors.append(
                TensorLayout(
                    key=p.key, role=p.role, shape=p.shape, fold=fold, keep=tuple(keep), groups=tuple(groups),
                    sizes=tuple(p.shape[a] for a in keep), factor=math.prod(p.shape[a] for a in fold),
                )
            )
        self.tensors: tuple[TensorLayout, ...] = tuple(tensors)
        self.group_sizes = sizes

    def __len__(self) -> int:
        return len(self.tensors)

    def __repr__(self) -> str:
        return f"FeatureLayout({self.spec.describe()}, mode={self.mode})"

    def channels(self, c: int) -> tuple[int, ...]:
        """Per tensor, the channel count of a ``c``-channel feature (``c * F_i``)."""
        return tuple(c * t.factor for t in self.tensors)

    # ------------------------------------------------------------- conversion
    def check(self, ws: WeightSpace) -> None:
        """Raise :class:`WeightSpaceError` unless ``ws`` has this layout's spec."""
        if not isinstance(ws, WeightSpace):
            raise WeightSpaceError(f"expected a WeightSpace, got {type(ws).__name__}")
        if not (ws.spec is self.spec or ws.spec.same_space(self.spec)):
            raise WeightSpaceError(f"this module was built for {self.spec!r}, but got networks of {ws.spec!r}")

    def encode(self, ws: WeightSpace) -> Features:
        """``WeightSpace`` -> 1-channel features ``[B, F_i, *kept]``."""
        self.check(ws)
        return self.encode_tensors([t.unsqueeze(1) for t in ws.tensors])

    def encode_tensors(self, tensors: Sequence[torch.Tensor]) -> Features:
        """Per-parameter tensors ``[B, C, *param.shape]`` -> features ``[B, C * F_i, *kept]``."""
        out = []
        for t, lay in zip(tensors, self.tensors):
            B, C = t.shape[:2]
            if lay.fold:
                t = t.permute(0, 1, *(2 + a for a in lay.fold), *(2 + a for a in lay.keep))
            out.append(t.reshape(B, C * lay.factor, *lay.sizes))
        return tuple(out)

    def decode_tensors(self, feats: Features) -> list[torch.Tensor]:
        """Inverse of :meth:`encode_tensors`: features -> ``[B, C, *param.shape]``."""
        out = []
        for f, lay in zip(feats, self.tensors):
            B = f.shape[0]
            if f.shape[1] % lay.factor:
                raise WeightSpaceError(
                    f"feature has {f.shape[1]} channels, not a multiple of the fold factor {lay.factor}", tensor=lay.key
                )
            C = f.shape[1] // lay.factor
            t = f.reshape(B, C, *(lay.shape[a] for a in lay.fold), *lay.sizes)
            if lay.fold:
                order = lay.fold + lay.keep  # position of each param axis in t (after B, C)
                t = t.permute(0, 1, *(2 + order.index(a) for a in range(len(lay.shape))))
            out.append(t)
        return out

    def decode(self, feats: Features) -> WeightSpace:
        """1-channel features -> ``WeightSpace`` (inverse of :meth:`encode`)."""
        tensors = self.decode_tensors(feats)
        for t, lay in zip(tensors, self.tensors):
            if t.shape[1] != 1:
                raise WeightSpaceError(f"decode needs 1-channel features, got {t.shape[1]} channels", tensor=lay.key)
        return WeightSpace(self.spec, [t.squeeze(1) for t in tensors])

    # --------------------------------------------------------------- symmetry
    def permute(self, feats: Features, perm: Permutation) -> Features:
        """Apply ``perm`` to the kept axes of ``feats`` (convention of :func:`wspace.symmetry.permute`).

        Groups missing from ``perm`` are left alone, so a spec-level permutation acts
        on ``"np"`` features as a hidden-neuron permutation.
        """
        out = []
        for f, lay in zip(feats, self.tensors):
            for k, g in enumerate(lay.groups):
                if g in perm.perms:
                    idx = perm.perms[g].to(f.device)
                    view = [idx.shape[0]] + [1] * (f.dim() - 1)
                    view[2 + k] = idx.shape[1]
                    f = f.gather(2 + k, idx.reshape(view).expand_as(f))
            out.append(f)
        return tuple(out)

    def random_permutation(self, batch_size: int, generator: torch.Generator | None = None) -> Permutation:
        """A random permutation of every group of the layout (I/O groups included in ``"np"`` mode)."""
        return Permutation(
            {g: torch.argsort(torch.rand(batch_size, n, generator=generator), dim=1) for g, n in sorted(self.group_sizes.items())}
        )


@lru_cache(maxsize=256)
def feature_layout(spec: WeightSpaceSpec, mode: str = "hnp") -> FeatureLayout:
    """The (cached) :class:`FeatureLayout` of ``spec`` in ``mode``."""
    return FeatureLayout(spec, mode)


def tuple_apply(fn, feats: Features) -> Features:
    """Apply an elementwise function to every tensor of a feature tuple."""
    return tuple(fn(f) for f in feats)


def check_features(layout: FeatureLayout, feats: Features, channels: Sequence[int], who: str) -> None:
    """Raise :class:`WeightSpaceError` unless ``feats`` matches ``layout`` with ``channels[i]``
    channels on tensor ``i`` (``who`` names the caller in the message)."""
    if len(feats) != len(layout.tensors):
        raise WeightSpaceError(f"{who} expects {len(layout.tensors)} feature tensors, got {len(feats)}")
    for f, c, lay in zip(feats, channels, layout.tensors):
        if f.dim() != 2 + len(lay.sizes) or f.shape[1] != c or tuple(f.shape[2:]) != lay.sizes:
            raise WeightSpaceError(
                f"{who}: feature of shape {tuple(f.shape)}, expected [B, {c}, {', '.join(map(str, lay.sizes))}]",
                tensor=lay.key,
            )
