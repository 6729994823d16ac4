"""``WeightSpace``: B networks of one architecture, stored as stacked tensors."""
from __future__ import annotations

from typing import Iterable, Mapping, Sequence

import torch
from torch import nn

from . import functional
from .errors import WeightSpaceError
from .spec import WeightSpaceSpec, spec_from_module


def check_keys(keys: Iterable[str], spec: WeightSpaceSpec, where: str | None = None) -> None:
    """Raise unless ``keys`` are exactly the spec's parameter keys (BatchNorm counters ignored)."""
    keys = {k for k in keys if not k.endswith("num_batches_tracked")}
    missing = [k for k in spec.keys if k not in keys]
    extra = sorted(keys - set(spec.keys))
    if missing:
        raise WeightSpaceError(f"missing key(s) {missing} required by the spec", file=where, tensor=missing[0])
    if extra:
        raise WeightSpaceError(f"unexpected key(s) {extra} not in the spec", file=where, tensor=extra[0])


def check_state_dict(sd: Mapping[str, torch.Tensor], spec: WeightSpaceSpec, where: str | None = None) -> None:
    """Raise unless ``sd`` has exactly the spec's keys, each with the spec's shape."""
    check_keys(sd.keys(), spec, where)
    for p in spec.params:
        shape = tuple(sd[p.key].shape)
        if shape != p.shape:
            raise WeightSpaceError(f"has shape {shape}, the spec expects {p.shape}", file=where, tensor=p.key)


class WeightSpace:
    """A batch of ``B`` networks sharing one :class:`WeightSpaceSpec`.

    ``tensors[i]`` has shape ``[B, *spec.params[i].shape]``, in spec order. All other
    representations (state_dicts, flat vectors, neural graphs, generator tokens) are
    lossless views of this one.

    Example::

        ws = WeightSpace.from_modules([mlp_a, mlp_b])
        y = ws(x)                    # [2, N, out]: both networks, one call
        flat = ws.flatten()          # [2, D]
        ws2 = WeightSpace.from_flat(ws.spec, flat)
    """

    __slots__ = ("spec", "tensors")

    def __init__(self, spec: WeightSpaceSpec, tensors: Sequence[torch.Tensor]):
        tensors = tuple(tensors)
        if len(tensors) != len(spec.params):
            raise WeightSpaceError(f"expected {len(spec.params)} tensors for {spec!r}, got {len(tensors)}")
        B = tensors[0].shape[0] if tensors[0].dim() > 0 else -1
        for p, t in zip(spec.params, tensors):
            if tuple(t.shape[1:]) != p.shape or t.shape[0] != B:
                raise WeightSpaceError(
                    f"has shape {tuple(t.shape)}, expected [B={B}, {', '.join(map(str, p.shape))}]", tensor=p.key
                )
        self.spec = spec
        self.tensors = tensors

    # ------------------------------------------------------------ constructors
    @classmethod
    def from_module(cls, module: nn.Module, spec: WeightSpaceSpec | None = None) -> "WeightSpace":
        """One network (B = 1)."""
        return cls.from_modules([module], spec)

    @classmethod
    def from_modules(cls, modules: Iterable[nn.Module], spec: WeightSpaceSpec | None = None) -> "WeightSpace":
        """Stack networks of one architecture (the spec is derived from the first)."""
        modules = list(modules)
        if not modules:
            raise WeightSpaceError("from_modules needs at least one module")
        spec = spec or spec_from_module(modules[0])
        return cls.from_state_dicts(spec, [m.state_dict() for m in modules])

    @classmethod
    def from_state_dicts(
        cls, spec: WeightSpaceSpec, state_dicts: Sequence[Mapping[str, torch.Tensor]], *, source: str | None = None
    ) -> "WeightSpace":
        """Stack state_dicts; missing/extra keys or wrong shapes raise :class:`WeightSpaceError`."""
        if not state_dicts:
            raise WeightSpaceError("from_state_dicts needs at least one state_dict", file=source)
        for i, sd in enumerate(state_dicts):
            check_state_dict(sd, spec, source or f"state_dict #{i}")
        tensors = [torch.stack([sd[p.key].detach() for sd in state_dicts]) for p in spec.params]
        return cls(spec, tensors)

    @classmethod
    def from_flat(cls, spec: WeightSpaceSpec, flat: torch.Tensor) -> "WeightSpace":
        """Inverse of :meth:`flatten`: ``flat`` is ``[B, spec.num_params]``."""
        if flat.dim() != 2 or flat.shape[1] != spec.num_params:
            raise WeightSpaceError(f"flat tensor of shape {tuple(flat.shape)}, expected [B, {spec.num_params}]")
        chunks = torch.split(flat, [p.numel for p in spec.params], dim=1)
        return cls(spec, [c.reshape(flat.shape[0], *p.shape) for c, p in zip(chunks, spec.params)])

    @classmethod
    def init(
        cls, spec: WeightSpaceSpec, batch_size: int, *, generator: torch.Generator | None = None,
        device: torch.device | str | None = None, dtype: torch.dtype = torch.float32,
    ) -> "WeightSpace":
        """``batch_size`` networks with PyTorch's default Linear/Conv initialization."""
        tensors = []
        for p in spec.params:
            layer = spec.layers[p.layer]
            fan_in = layer.in_features
            for k in layer.kernel:
                fan_in *= k
            bound = functional.kaiming_bound(fan_in)
            u = torch.rand((batch_size, *p.shape), generator=generator, device=device, dtype=dtype)
            tensors.append((2 * u - 1) * bound)
        return cls(spec, tensors)

    @staticmethod
    def cat(spaces: Sequence["WeightSpace"]) -> "WeightSpace":
        """Concatenate batches of the same spec."""
        if not spaces:
            raise WeightSpaceError("cat needs at least one WeightSpace")
        spec = spaces[0].spec
        for s in spaces[1:]:
            if not s.spec.same_space(spec):
                raise WeightSpaceError(f"cannot concatenate different architectures: {spec!r} and {s.spec!r}")
        return WeightSpace(spec, [torch.cat(ts) for ts in zip(*(s.tensors for s in spaces))])

    # ------------------------------------------------------------------- views
    def __len__(self) -> int:
        return self.tensors[0].shape[0]

    @property
    def batch_size(self) -> int:
        return len(self)

    @property
    def device(self) -> torch.device:
        return self.tensors[0].device

    @property
    def dtype(self) -> torch.dtype:
        return self.tensors[0].dtype

    @property
    def weights(self) -> tuple[torch.Tensor, ...]:
        """Per parametric layer, its weight ``[B, out, in, *kernel]``."""
        return tuple(self.tensors[l.weight] for l in self.spec.layers)

    @property
    def biases(self) -> tuple[torch.Tensor | None, ...]:
        """Per parametric layer, its bias ``[B, out]`` (``None`` for layers without bias)."""
        return tuple(None if l.bias is None else self.tensors[l.bias] for l in self.spec.layers)

    def __getitem__(self, idx) -> "WeightSpace":
        """Index the batch. An integer keeps the batch axis (B = 1)."""
        if isinstance(idx, int):
            if not -len(self) <= idx < len(self):
                raise IndexError(f"index {idx} out of range for {len(self)} networks")
            idx = slice(idx, idx + 1 if idx != -1 else None)
        return WeightSpace(self.spec, [t[idx] for t in self.tensors])

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    def flatten(self) -> torch.Tensor:
        """``[B, spec.num_params]``, parameters concatenated in spec order."""
        B = len(self)
        return torch.cat([t.reshape(B, -1) for t in self.tensors], dim=1)

    def to_state_dicts(self) -> list[dict[str, torch.Tensor]]:
        """One state_dict per network, with the spec's keys (tensors are copies)."""
        return [{p.key: t[b].clone() for p, t in zip(self.spec.params, self.tensors)} for b in range(len(self))]

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Stacked tensors keyed by parameter key (each ``[B, *shape]``)."""
        return {p.key: t for p, t in zip(self.spec.params, self.tensors)}

    def to_modules(self) -> list[nn.Module]:
        """Rebuild one ``nn.Module`` per network (eval mode)."""
        mods = []
        for sd in self.to_state_dicts():
            m = self.spec.build_module()
            m.load_state_dict(sd)
            mods.append(m.eval())
        return mods

    def map(self, fn) -> "WeightSpace":
        """Apply ``fn`` to every tensor (must keep shapes)."""
        return WeightSpace(self.spec, [fn(t) for t in self.tensors])

    def to(self, *args, **kwargs) -> "WeightSpace":
        """Like ``Tensor.to`` (device and/or dtype)."""
        return self.map(lambda t: t.to(*args, **kwargs))

    def clone(self) -> "WeightSpace":
        return self.map(torch.clone)

    def detach(self) -> "WeightSpace":
        return self.map(torch.Tensor.detach)

    def requires_grad_(self, flag: bool = True) -> "WeightSpace":
        for t in self.tensors:
            t.requires_grad_(flag)
        return self

    def __add__(self, other: "WeightSpace") -> "WeightSpace":
        self._check_same(other)
        return WeightSpace(self.spec, [a + b for a, b in zip(self.tensors, other.tensors)])

    def __sub__(self, other: "WeightSpace") -> "WeightSpace":
        self._check_same(other)
        return WeightSpace(self.spec, [a - b for a, b in zip(self.tensors, other.tensors)])

    def __mul__(self, scalar) -> "WeightSpace":
        if isinstance(scalar, torch.Tensor) and scalar.dim() == 1:  # per-network factor
            return self.map(lambda t: t * scalar.reshape(-1, *([1] * (t.dim() - 1))))
        return self.map(lambda t: t * scalar)

    __rmul__ = __mul__

    def _check_same(self, other: "WeightSpace") -> None:
        if not isinstance(other, WeightSpace) or not other.spec.same_space(self.spec):
            raise WeightSpaceError("operands must be WeightSpaces of the same spec")

    # -------------------------------------------------------------- evaluation
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Run all B networks on ``x`` (``[N, ...]`` shared or ``[B, N, ...]``) -> ``[B, N, ...]``."""
        return functional.forward(self.spec, self.tensors, x)

    def __repr__(self) -> str:
        return f"WeightSpace(B={len(self)}, {self.spec.describe()}, dtype={self.dtype}, device={self.device})"
