"""The records a :class:`~wspace.spec.WeightSpaceSpec` is made of: parameters, permutation
groups, program ops and parametric layers. Immutable and hashable, like the spec itself."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any


def _freeze(value: Any) -> Any:
    """Lists (from JSON) -> tuples, recursively, so specs stay hashable."""
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    return value


@dataclass(frozen=True)
class ParamSpec:
    """One parameter tensor of the architecture.

    Attributes:
        key: its state_dict key.
        shape: its shape (without the batch axis).
        role: ``"weight"`` or ``"bias"``.
        axes: per axis, the permutation group id or ``None`` (fixed axis).
        layer: index of the parametric layer it belongs to (see ``WeightSpaceSpec.layers``).
    """

    key: str
    shape: tuple[int, ...]
    role: str
    axes: tuple[int | None, ...]
    layer: int

    @property
    def numel(self) -> int:
        """The number of scalars in this tensor."""
        n = 1
        for s in self.shape:
            n *= s
        return n


@dataclass(frozen=True)
class GroupSpec:
    """A permutation group: ``size`` neurons permuted together wherever ``id`` appears.

    ``symmetries`` lists the extra function-preserving transforms of these neurons
    (``"scale"``, ``"sign"``); ``stream`` is True for residual streams.
    """

    id: int
    size: int
    symmetries: tuple[str, ...]
    stream: bool = False


@dataclass(frozen=True)
class Op:
    """One step of a network's program.

    ``kind`` is one of ``linear``, ``conv``, ``act``, ``pool``, ``adaptive_pool``,
    ``gap``, ``flatten``, ``dropout``, ``residual``, ``sequential``. ``name`` is the
    child name in its parent module, ``attrs`` the op's settings, ``params`` indices into
    ``WeightSpaceSpec.params`` (weight, then bias if any), ``children`` the body of a
    residual block or nested ``nn.Sequential``.
    """

    kind: str
    name: str
    attrs: tuple[tuple[str, Any], ...] = ()
    params: tuple[int, ...] = ()
    children: tuple["Op", ...] = ()

    def attr(self, key: str, default: Any = None) -> Any:
        """The value of setting ``key``, or ``default`` when the op has no such setting."""
        for k, v in self.attrs:
            if k == key:
                return v
        return default

    def to_dict(self) -> dict:
        """The JSON form of this op (empty fields left out)."""
        d: dict[str, Any] = {"kind": self.kind, "name": self.name}
        if self.attrs:
            d["attrs"] = {k: v for k, v in self.attrs}
        if self.params:
            d["params"] = list(self.params)
        if self.children:
            d["children"] = [c.to_dict() for c in self.children]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Op":
        """The op of :meth:`to_dict`'s output (lists become tuples, settings are sorted)."""
        return cls(
            kind=d["kind"],
            name=d["name"],
            attrs=tuple(sorted((k, _freeze(v)) for k, v in d.get("attrs", {}).items())),
            params=tuple(d.get("params", ())),
            children=tuple(cls.from_dict(c) for c in d.get("children", ())),
        )


@dataclass(frozen=True)
class LayerSpec:
    """A parametric layer (linear or conv) seen as a map between neuron sets.

    ``in_group`` / ``out_group`` are the permutation groups of its input and output
    neurons (``None`` for network inputs/outputs), ``kernel`` the kernel shape
    (``()`` for linear layers), ``weight`` / ``bias`` indices into ``spec.params``
    (``bias`` is ``None`` without bias).
    """

    index: int
    kind: str
    in_features: int
    out_features: int
    kernel: tuple[int, ...]
    weight: int
    bias: int | None
    in_group: int | None
    out_group: int | None
