"""The encoder contract: one base class for invariant encoders, one for equivariant ones.

Every invariant encoder is an :class:`Encoder`::

    enc = SomeEncoder(spec, out_features, **options)   # same constructor shape for all
    y = enc(ws)             # Tensor [B, out_features]   (ws: a WeightSpace of B networks)
    z = enc.features(ws)    # Tensor [B, d]: the embedding the head reads (before the head)

``forward`` is ``head(features(ws))``. The class attribute :attr:`Encoder.symmetry` says
what the embedding is invariant to (tests check it for every encoder):

* ``"hidden_neurons"``: every permutation of the spec's groups
  (:func:`wspace.symmetry.random_permutation`), and nothing more: permuting one weight's
  rows without the next layer's columns changes the output;
* ``"tensor_entries"``: any reordering of the entries of each tensor (per-tensor
  statistics), hence also hidden-neuron permutations;
* ``"none"``: no symmetry (a baseline).

Every weight -> weight encoder is an :class:`EquivariantEncoder`:
``EquivariantX(spec, **options)(ws) -> WeightSpace`` (same spec), equivariant to the
spec's permutation groups, with the editing parametrization ``ws + gamma * f(ws)`` when
built with ``residual=True``. An invariant encoder names its equivariant counterpart in
:attr:`Encoder.equivariant` (``None``: there is none), and the options of its own that the
counterpart does not take (the head's, the readout's) in
:attr:`Encoder.invariant_only_options`, so that a task can build the equivariant version
of a configured encoder (:func:`wspace.nn.build_equivariant`).
"""
from __future__ import annotations

from typing import Any, ClassVar, Mapping

import torch
from torch import nn

from ..errors import WeightSpaceError
from ..space import WeightSpace
from ..spec import WeightSpaceSpec
from .common import check_positive

__all__ = ["Encoder", "EquivariantEncoder", "check_weight_space", "SYMMETRIES"]

SYMMETRIES = ("hidden_neurons", "tensor_entries", "none")


def check_weight_space(ws: Any, spec: WeightSpaceSpec | None) -> None:
    """Raise :class:`WeightSpaceError` unless ``ws`` is a ``WeightSpace`` of ``spec``
    (any spec when ``spec`` is None)."""
    if not isinstance(ws, WeightSpace):
        raise WeightSpaceError(f"expected a WeightSpace, got {type(ws).__name__}")
    if spec is not None and not (ws.spec is spec or ws.spec.same_space(spec)):
        raise WeightSpaceError(f"this module was built for {spec!r}, but got networks of {ws.spec!r}")


class Encoder(nn.Module):
    """Base of the invariant encoders: ``WeightSpace [B]`` -> ``Tensor [B, out_features]``.

    Subclasses call ``super().__init__(spec, out_features)`` first, set ``self.head``
    (a module ``[B, d] -> [B, out_features]``) and implement :meth:`features`.

    Args:
        spec: the architecture of the input networks (``None`` only for encoders that
            read any architecture, such as the neural-graph encoder).
        out_features: the output width ``k``.
    """

    #: what :meth:`features` is invariant to, one of :data:`SYMMETRIES`
    symmetry: ClassVar[str] = "hidden_neurons"
    #: the weight -> weight counterpart (an :class:`EquivariantEncoder` subclass), if any
    equivariant: ClassVar[type["EquivariantEncoder"] | None] = None
    #: constructor options the counterpart does not take (dropped when building it)
    invariant_only_options: ClassVar[tuple[str, ...]] = ()

    head: nn.Module

    def __init__(self, spec: WeightSpaceSpec | None, out_features: int) -> None:
        super().__init__()
        check_positive(out_features=out_features)
        self.spec, self.out_features = spec, out_features

    def check_input(self, ws: Any) -> None:
        """Raise :class:`WeightSpaceError` unless ``ws`` is a ``WeightSpace`` this encoder reads."""
        check_weight_space(ws, self.spec)

    def features(self, ws: WeightSpace) -> torch.Tensor:
        """The embedding ``[B, d]`` of ``ws`` that the head reads (invariant per :attr:`symmetry`)."""
        raise NotImplementedError

    def forward(self, ws: WeightSpace) -> torch.Tensor:
        """``[B, out_features]``: the head applied to :meth:`features`."""
        return self.head(self.features(ws))

    @classmethod
    def equivariant_options(cls, options: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
        """Split this encoder's ``options`` into those its :attr:`equivariant` counterpart
        takes and the names of those it does not (:attr:`invariant_only_options`)."""
        keep = {k: v for k, v in options.items() if k not in cls.invariant_only_options}
        return keep, sorted(set(options) - set(keep))


class EquivariantEncoder(nn.Module):
    """Base of the equivariant encoders: ``WeightSpace [B]`` -> ``WeightSpace [B]`` (same spec).

    Subclasses call ``super().__init__(spec, residual=..., residual_init=...)`` and implement
    :meth:`delta` (the equivariant map ``f``). ``forward(ws)`` is ``f(ws)``, or
    ``ws + gamma * f(ws)`` with ``residual=True`` (``gamma`` a learned scalar initialized
    to ``residual_init``: the editing parametrization).
    """

    def __init__(self, spec: WeightSpaceSpec, *, residual: bool = False, residual_init: float = 1e-2) -> None:
        super().__init__()
        if not isinstance(spec, WeightSpaceSpec):
            raise WeightSpaceError(f"{type(self).__name__} needs a WeightSpaceSpec, got {type(spec).__name__}")
        self.spec = spec
        self.residual = bool(residual)
        self.gamma = nn.Parameter(torch.tensor(float(residual_init))) if self.residual else None

    def check_input(self, ws: Any) -> None:
        """Raise :class:`WeightSpaceError` unless ``ws`` is a ``WeightSpace`` of this spec."""
        check_weight_space(ws, self.spec)

    def delta(self, ws: WeightSpace) -> WeightSpace:
        """The equivariant map ``f(ws)`` (same spec)."""
        raise NotImplementedError

    def add_residual(self, ws: WeightSpace, delta: WeightSpace) -> WeightSpace:
        """``delta``, or ``ws + gamma * delta`` when built with ``residual=True``."""
        if not self.residual:
            return delta
        return WeightSpace(ws.spec, [t + self.gamma * d for t, d in zip(ws.tensors, delta.tensors)])

    def forward(self, ws: WeightSpace) -> WeightSpace:
        self.check_input(ws)
        return self.add_residual(ws, self.delta(ws))
