"""The :class:`WeightSpaceSpec` type: its views, its JSON form and its fingerprint."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Iterator

from torch import nn

from ..errors import WeightSpaceError
from .records import GroupSpec, LayerSpec, Op, ParamSpec
from .rebuild import build_module

SPEC_FORMAT_VERSION = 1
"""The version written into every spec's JSON (``format_version``); newer ones are refused."""


@dataclass(frozen=True)
class WeightSpaceSpec:
    """Immutable, hashable, JSON-serializable description of one architecture's weight space.

    Derive one with :func:`~wspace.spec.spec_from_module`; two specs with equal
    :attr:`fingerprint` describe networks that can be stacked into one
    :class:`~wspace.WeightSpace`.

    Attributes:
        params: every parameter in execution order (:class:`ParamSpec`).
        program: the ops that evaluate the network (:class:`Op`).
        groups: the permutation groups (:class:`GroupSpec`), numbered by ``id``.
        input_dims: 0 for feature vectors, 1 for ``[C, L]`` signals, 2 for ``[C, H, W]`` images.
        in_features: input features (or input channels).
        out_features: output features.
        family: the registered family name that rebuilds the original class, or ``None``.
        family_kwargs: JSON of the family's constructor kwargs.
    """

    params: tuple[ParamSpec, ...]
    program: tuple[Op, ...]
    groups: tuple[GroupSpec, ...]
    input_dims: int  # 0: feature vectors, 1: [C, L] signals, 2: [C, H, W] images
    in_features: int  # input features or input channels
    out_features: int
    family: str | None = None  # registered family name, to rebuild the original class
    family_kwargs: str = "{}"  # JSON of the family's constructor kwargs
    _layers: tuple[LayerSpec, ...] = field(default=(), compare=False, hash=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_layers", _derive_layers(self))

    # ----------------------------------------------------------------- views
    @property
    def layers(self) -> tuple[LayerSpec, ...]:
        """The parametric layers (linear / conv) in execution order."""
        return self._layers

    @property
    def keys(self) -> tuple[str, ...]:
        """The state_dict keys, in execution order."""
        return tuple(p.key for p in self.params)

    @property
    def shapes(self) -> tuple[tuple[int, ...], ...]:
        """The parameter shapes (without the batch axis), in execution order."""
        return tuple(p.shape for p in self.params)

    @property
    def num_params(self) -> int:
        """The number of scalar parameters of one network."""
        return sum(p.numel for p in self.params)

    @property
    def activations(self) -> tuple[str, ...]:
        """Names of the activations used, in order of first appearance."""
        seen: list[str] = []
        for op in self.walk():
            if op.kind == "act" and op.attr("name") not in seen:
                seen.append(op.attr("name"))
        return tuple(seen)

    def group(self, gid: int) -> GroupSpec:
        """The permutation group with id ``gid``."""
        return self.groups[gid]

    def walk(self) -> Iterator[Op]:
        """All ops, residual bodies included, in execution order."""

        def rec(ops: tuple[Op, ...]) -> Iterator[Op]:
            for op in ops:
                yield op
                yield from rec(op.children)

        return rec(self.program)

    # ------------------------------------------------------------------ JSON
    def to_dict(self) -> dict:
        """The JSON-ready form (``format_version``, params, program, groups, shapes, family)."""
        return {
            "format_version": SPEC_FORMAT_VERSION,
            "params": [
                {"key": p.key, "shape": list(p.shape), "role": p.role, "axes": list(p.axes), "layer": p.layer}
                for p in self.params
            ],
            "program": [op.to_dict() for op in self.program],
            "groups": [
                {"id": g.id, "size": g.size, "symmetries": list(g.symmetries), "stream": g.stream} for g in self.groups
            ],
            "input_dims": self.input_dims,
            "in_features": self.in_features,
            "out_features": self.out_features,
            "family": self.family,
            "family_kwargs": json.loads(self.family_kwargs),
        }

    @classmethod
    def from_dict(cls, d: dict) -> "WeightSpaceSpec":
        """The spec of :meth:`to_dict`'s output.

        Raises:
            WeightSpaceError: for a missing or invalid field, or a newer ``format_version``.
        """
        try:
            version = d.get("format_version", SPEC_FORMAT_VERSION)
            if version > SPEC_FORMAT_VERSION:
                raise WeightSpaceError(f"spec format version {version} is newer than this library ({SPEC_FORMAT_VERSION})")
            return cls(
                params=tuple(
                    ParamSpec(p["key"], tuple(p["shape"]), p["role"], tuple(p["axes"]), int(p["layer"])) for p in d["params"]
                ),
                program=tuple(Op.from_dict(o) for o in d["program"]),
                groups=tuple(
                    GroupSpec(int(g["id"]), int(g["size"]), tuple(g["symmetries"]), bool(g.get("stream", False)))
                    for g in d["groups"]
                ),
                input_dims=int(d["input_dims"]),
                in_features=int(d["in_features"]),
                out_features=int(d["out_features"]),
                family=d.get("family"),
                family_kwargs=json.dumps(d.get("family_kwargs", {}), sort_keys=True),
            )
        except (KeyError, TypeError) as e:
            raise WeightSpaceError(f"malformed spec dictionary: missing or invalid field {e}") from e

    def to_json(self, **kwargs: Any) -> str:
        """:meth:`to_dict` as JSON text; ``kwargs`` go to ``json.dumps``."""
        return json.dumps(self.to_dict(), **kwargs)

    @classmethod
    def from_json(cls, text: str) -> "WeightSpaceSpec":
        """The spec of :meth:`to_json`'s output.

        Raises:
            WeightSpaceError: when ``text`` is not valid JSON or not a spec.
        """
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise WeightSpaceError(f"spec is not valid JSON: {e}") from e
        return cls.from_dict(d)

    @property
    def fingerprint(self) -> str:
        """A short stable hash of the weight space and the function it computes.

        It ignores what does not change either: the family label and its kwargs,
        and dropout layers (identity at evaluation). Networks with equal
        fingerprints can be stacked into one :class:`~wspace.WeightSpace`.
        """
        d = self.to_dict()
        d.pop("family")
        d.pop("family_kwargs")
        d["program"] = _strip_dropout(d["program"])
        return hashlib.sha1(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]

    def same_space(self, other: "WeightSpaceSpec") -> bool:
        """True when ``other`` describes the same weight space and function (see ``fingerprint``)."""
        return self is other or self == other or self.fingerprint == other.fingerprint

    # ---------------------------------------------------------------- modules
    def build_module(self) -> nn.Module:
        """Rebuild an ``nn.Module`` with this spec's state_dict keys (random init)."""
        return build_module(self.program, self.params, self.family, self.family_kwargs)

    def describe(self) -> str:
        """A one-line human summary, e.g. ``linear 2->32 | relu | linear 32->1``."""
        return " | ".join(_describe_op(op, self) for op in self.program)

    def __repr__(self) -> str:  # keep reprs short: specs appear in error messages
        return f"WeightSpaceSpec({self.describe()}; {self.num_params} params, {len(self.groups)} groups)"


def _strip_dropout(ops: list[dict]) -> list[dict]:
    out = []
    for op in ops:
        if op["kind"] == "dropout":
            continue
        op = dict(op)
        if "children" in op:
            op["children"] = _strip_dropout(op["children"])
        out.append(op)
    return out


def _derive_layers(spec: WeightSpaceSpec) -> tuple[LayerSpec, ...]:
    layers = []
    for op in spec.walk():
        if op.kind not in ("linear", "conv"):
            continue
        w = spec.params[op.params[0]]
        b = op.params[1] if len(op.params) > 1 else None
        layers.append(
            LayerSpec(
                index=w.layer, kind=op.kind, in_features=w.shape[1], out_features=w.shape[0],
                kernel=tuple(w.shape[2:]), weight=op.params[0], bias=b, in_group=w.axes[1], out_group=w.axes[0],
            )
        )
    return tuple(layers)


def _describe_op(op: Op, spec: WeightSpaceSpec) -> str:
    if op.kind == "linear":
        w = spec.params[op.params[0]]
        return f"linear {w.shape[1]}->{w.shape[0]}"
    if op.kind == "conv":
        w = spec.params[op.params[0]]
        return f"conv{op.attr('dims')}d {w.shape[1]}->{w.shape[0]} k{'x'.join(map(str, w.shape[2:]))}"
    if op.kind == "act":
        return op.attr("name")
    if op.kind == "sequential":
        return " | ".join(_describe_op(c, spec) for c in op.children)
    if op.kind == "residual":
        return f"residual({_describe_op(op.children[0], spec)})"
    return op.kind
