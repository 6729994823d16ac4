"""Counter-based randomness of the vectorized trainer: every random draw of network ``m``
is a pure function of ``(seed_m, stream, index)``, never of which other networks share
its chunk (data order, train-fraction subsamples, dropout masks)."""
from __future__ import annotations

import math
from typing import Sequence

import torch

__all__ = ["hash32", "hash32_int", "counter_bits", "counter_uniform", "stream_key", "epoch_order", "DropoutSampler",
           "STREAM_ORDER", "STREAM_DROPOUT", "STREAM_SUBSET"]

_M32 = 0xFFFFFFFF

# random streams (the ``stream`` argument of :func:`counter_bits`)
STREAM_ORDER = 1  # data order per epoch
STREAM_DROPOUT = 2  # dropout offsets
STREAM_SUBSET = 3  # the train_fraction subsample of the zoo builder


def _mul32(x: torch.Tensor, c: int) -> torch.Tensor:
    """``x * c mod 2**32`` for ``x`` in [0, 2**32) held in int64, without int64 overflow."""
    return ((x & 0xFFFF) * c + ((((x >> 16) * c) & 0xFFFF) << 16)) & _M32


def hash32(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer hash (``lowbias32``) of int64 tensors holding values in [0, 2**32)."""
    x = x & _M32
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    return x ^ (x >> 16)


def hash32_int(x: int) -> int:
    """:func:`hash32` of one Python integer (no tensor ops: used per step)."""
    x &= _M32
    x ^= x >> 16
    x = (x * 0x7FEB352D) & _M32
    x ^= x >> 15
    x = (x * 0x846CA68B) & _M32
    return x ^ (x >> 16)


def stream_key(seeds: torch.Tensor, *stream: int) -> torch.Tensor:
    """Per-network 32-bit keys for a random stream (``seeds`` ``[M]`` int64)."""
    k = hash32(seeds.to(torch.int64) & _M32) ^ hash32((seeds.to(torch.int64) >> 32) + 0x9E3779B9)
    for s in stream:
        k = hash32(k ^ hash32(torch.as_tensor(int(s) & _M32, dtype=torch.int64) + 0x632BE5AB))
    return k


def counter_bits(seeds: torch.Tensor, stream: Sequence[int], n: int) -> torch.Tensor:
    """``[M, n]`` int64 32-bit random words, a pure function of ``(seed, stream, index)``."""
    k = stream_key(seeds, *stream)
    idx = torch.arange(n, dtype=torch.int64, device=seeds.device)
    return hash32(k[:, None] ^ hash32(idx)[None, :])


def counter_uniform(seeds: torch.Tensor, stream: Sequence[int], n: int) -> torch.Tensor:
    """``[M, n]`` float32 uniforms in [0, 1) (24 random bits each), see :func:`counter_bits`."""
    return (counter_bits(seeds, stream, n) >> 8).to(torch.float32) * (1.0 / (1 << 24))


def epoch_order(seeds: torch.Tensor, epoch: int, member: torch.Tensor) -> torch.Tensor:
    """Per-network random order of its own training samples for one epoch.

    ``member`` is ``[M, N]`` bool (which of the N pooled samples belong to network m's
    task). Returns ``[M, N]`` sample indices: row m starts with a random permutation of
    its members, followed by non-members.
    """
    keys = counter_bits(seeds, (STREAM_ORDER, epoch), member.shape[1])
    keys = torch.where(member, keys, keys + (1 << 33))  # non-members sort last
    return torch.argsort(keys, dim=1, stable=True)


class DropoutSampler:
    """Per-network dropout masks that depend only on ``(network seed, step, site)``.

    Each call draws one random bank ``u[L]`` (from a generator seeded by ``(step,
    site)``, shared by all networks) and gives network m the window of ``u`` starting
    at its own offset (hash of ``(seed, step, site)``). Per network the mask entries are
    i.i.d. Bernoulli(1 - p) across elements and steps; the cost is one ``rand`` and one
    gather per site, not a hash per element.
    """

    def __init__(self, seeds: torch.Tensor, p: torch.Tensor):
        self.seeds = seeds.to(torch.int64)
        self.key = stream_key(self.seeds, STREAM_DROPOUT)
        self.p = p.to(torch.float32)
        self.keep = 1.0 - self.p
        self.step = 0

    @property
    def active(self) -> bool:
        return bool((self.p > 0).any())

    def factor(self, shape: Sequence[int], site: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """``[M, *shape]`` multipliers: 0 (dropped) or ``1 / (1 - p_m)`` (inverted dropout,
        as ``nn.Dropout``), for the activations of one site at the current step."""
        M = self.seeds.shape[0]
        K = math.prod(shape)
        L = 2 * K + 1  # more offsets than window positions: distinct networks, distinct windows
        g = torch.Generator(device="cpu").manual_seed(hash32_int(self.step * 1009 + site))
        bank = torch.rand(L, generator=g)
        off = hash32(self.key ^ hash32_int(hash32_int(self.step) ^ site)) % L  # [M] per-network offsets
        windows = torch.cat([bank, bank[:K]]).as_strided((L, K), (1, 1))
        u = windows.index_select(0, off.cpu()).to(device).reshape(M, *shape)
        keep = self.keep.to(device, dtype).reshape(M, *([1] * len(shape)))
        return torch.where(u < keep, 1.0 / keep, torch.zeros((), dtype=dtype, device=device))

    def __call__(self, h: torch.Tensor, site: int) -> torch.Tensor:
        """Dropout on ``h`` ``[M, ...]`` (network axis first)."""
        return h * self.factor(h.shape[1:], site, h.dtype, h.device)
