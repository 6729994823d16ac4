"""Per-tensor standardization of weights: one mean and one std per parameter tensor of a spec,
fitted on a zoo's training split and shared by datasets, augmentations and generators."""
from __future__ import annotations

import numpy as np
import torch

from .errors import WeightSpaceError
from .space import WeightSpace
from .spec import WeightSpaceSpec

__all__ = ["WeightStats"]


class WeightStats:
    """Mean and standard deviation of every parameter tensor of a spec (one scalar each).

    ``normalize(ws)`` maps each tensor to ``(t - mean) / std``; ``denormalize`` inverts it.
    """

    def __init__(self, spec: WeightSpaceSpec, mean: torch.Tensor, std: torch.Tensor, count: int = 0):
        if mean.shape != (len(spec.params),) or std.shape != (len(spec.params),):
            raise WeightSpaceError(f"stats need one mean/std per parameter tensor ({len(spec.params)})")
        self.spec = spec
        self.mean = mean.to(torch.float64)
        self.std = std.to(torch.float64)
        self.count = int(count)

    @classmethod
    def compute(cls, zoo, indices: np.ndarray, chunk_size: int = 2048) -> "WeightStats":
        """Stats of ``zoo.weights(indices)`` (any object with ``spec``, ``path`` and
        ``weights(indices)``, e.g. a :class:`datasets_zoo.Zoo`), read in chunks (float64 sums)."""
        indices = np.asarray(indices, dtype=np.int64)
        if indices.size == 0:
            raise WeightSpaceError("cannot compute statistics on an empty train split", file=zoo.path)
        chunks = (zoo.weights(indices[a:a + chunk_size]) for a in range(0, len(indices), chunk_size))
        return cls._from_chunks(zoo.spec, chunks, len(indices))

    @classmethod
    def from_weights(cls, ws: WeightSpace, chunk_size: int = 2048) -> "WeightStats":
        """Stats of the networks ``ws`` held in memory (same arithmetic as :meth:`compute`)."""
        if len(ws) == 0:
            raise WeightSpaceError("cannot compute statistics of zero networks")
        ws = ws.detach()
        chunks = (ws[a:a + chunk_size].to("cpu") for a in range(0, len(ws), chunk_size))
        return cls._from_chunks(ws.spec, chunks, len(ws))

    @classmethod
    def _from_chunks(cls, spec: WeightSpaceSpec, chunks, count: int) -> "WeightStats":
        P = len(spec.params)
        s1 = torch.zeros(P, dtype=torch.float64)
        s2 = torch.zeros(P, dtype=torch.float64)
        n = torch.tensor([p.numel for p in spec.params], dtype=torch.float64) * count
        for ws in chunks:  # chunks, not networks
            s1 += torch.stack([t.double().sum() for t in ws.tensors])
            s2 += torch.stack([t.double().square().sum() for t in ws.tensors])
        mean = s1 / n
        var = (s2 / n - mean.square()).clamp_min(0)
        std = var.sqrt()
        std = torch.where(std > 1e-12, std, torch.ones_like(std))  # constant tensors: leave their scale
        return cls(spec, mean, std, count)

    def _check(self, ws: WeightSpace) -> None:
        if ws.spec.keys != self.spec.keys or ws.spec.shapes != self.spec.shapes:
            raise WeightSpaceError("these statistics were computed for another architecture")

    def normalize(self, ws: WeightSpace) -> WeightSpace:
        """``(t - mean) / std`` per parameter tensor."""
        self._check(ws)
        return WeightSpace(ws.spec, [(t - m.to(t.dtype)) / s.to(t.dtype)
                                     for t, m, s in zip(ws.tensors, self.mean, self.std)])

    def denormalize(self, ws: WeightSpace) -> WeightSpace:
        """Inverse of :meth:`normalize`."""
        self._check(ws)
        return WeightSpace(ws.spec, [t * s.to(t.dtype) + m.to(t.dtype)
                                     for t, m, s in zip(ws.tensors, self.mean, self.std)])

    def to_dict(self) -> dict:
        return {"keys": list(self.spec.keys), "mean": self.mean.tolist(), "std": self.std.tolist(), "count": self.count}

    @classmethod
    def from_dict(cls, spec: WeightSpaceSpec, d: dict) -> "WeightStats":
        if list(d["keys"]) != list(spec.keys):
            raise WeightSpaceError("statistics keys do not match the spec")
        return cls(spec, torch.tensor(d["mean"]), torch.tensor(d["std"]), d.get("count", 0))

    def __repr__(self) -> str:
        return f"WeightStats({len(self.spec.params)} tensors, from {self.count} networks)"
