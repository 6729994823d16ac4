"""Reading one shard of a native zoo: validated layout, ``preadv`` of row runs, gathers over
its memory map."""
from __future__ import annotations

import contextlib
import math
import mmap
import os
from pathlib import Path

import numpy as np

from wspace.errors import WeightSpaceError
from wspace.io import SAFETENSORS_DTYPES, read_safetensors_header
from wspace.spec import WeightSpaceSpec

__all__ = ["ShardReader", "AddressSpan", "HAVE_PREADV"]

HAVE_PREADV = hasattr(os, "preadv")


class ShardReader:
    """One shard: its validated layout, a file descriptor for ``preadv`` of row runs and,
    on first need, a read-only memory map for gathering scattered rows."""

    _fd: int | None = None  # class defaults: __del__ runs even when __init__ raised
    _map: tuple[mmap.mmap, int] | None = None
    _arrays: list[np.ndarray] | None = None

    def __init__(self, path: Path, spec: WeightSpaceSpec):
        self.path = path
        info, meta, start = read_safetensors_header(path)
        self.meta = meta
        missing = [k for k in spec.keys if k not in info]
        if missing:
            raise WeightSpaceError(f"shard lacks the spec's key(s) {missing}", file=path, tensor=missing[0])
        n = None
        layout = []
        for p in spec.params:
            d = info[p.key]
            shape = tuple(d["shape"])
            if shape[1:] != p.shape or (n is not None and shape[0] != n):
                raise WeightSpaceError(f"has shape {shape}, expected [n, {', '.join(map(str, p.shape))}]",
                                       file=path, tensor=p.key)
            n = shape[0]
            dtype = SAFETENSORS_DTYPES[d["dtype"]]
            # (tag, numpy dtype, per-row shape, bytes per row)
            layout.append((d["dtype"], dtype, shape[1:], math.prod(shape[1:]) * dtype.itemsize))
        self.n = n
        self.layout = layout
        self.tags = tuple(t for t, *_ in layout)
        self.row_bytes = tuple(rb for *_, rb in layout)
        # file offset of row 0 of each tensor (read_safetensors_header checked they lie in the file)
        self.offsets = tuple(start + info[p.key]["data_offsets"][0] for p in spec.params)

    def fd(self) -> int:
        if self._fd is None:
            try:
                self._fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
            except OSError as e:
                raise WeightSpaceError(f"cannot open shard: {e}", file=self.path) from e
        return self._fd

    def mapping(self) -> tuple[mmap.mmap, int]:
        """The shard's read-only memory map and its address (mapped on first call).

        Callers hold the returned map object while they use the address: dropping the
        reader (cache eviction) then cannot unmap memory that is still being read.
        """
        if self._map is None:
            try:
                with open(self.path, "rb") as f:
                    mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
            except (OSError, ValueError) as e:
                raise WeightSpaceError(f"cannot map shard: {e}", file=self.path) from e
            self._map = (mm, np.frombuffer(mm, dtype=np.uint8).__array_interface__["data"][0])
        return self._map

    def arrays(self) -> list[np.ndarray]:
        """``[n, *shape]`` read-only views of the shard's tensors (over the memory map)."""
        if self._arrays is None:
            mm, _ = self.mapping()
            self._arrays = [np.frombuffer(mm, dtype=dt, count=self.n * rb // dt.itemsize, offset=off)
                            .reshape(self.n, *shape) for (_, dt, shape, rb), off in zip(self.layout, self.offsets)]
        return self._arrays

    def gather(self, rows: np.ndarray, out: list[np.ndarray], pos: np.ndarray) -> None:
        """Copy shard rows ``rows`` into ``out[k][pos]``."""
        for o, arr in zip(out, self.arrays()):
            o[pos] = arr[rows]

    def read_run(self, first: int, out: list[np.ndarray], dst: slice) -> None:
        """Copy rows ``first, first + 1, ...`` into ``out[k][dst]``: one ``preadv`` per tensor,
        the same kernel copy as a plain ``read`` (no page faults, no mapped pages kept)."""
        fd = self.fd()
        for o, off, rb in zip(out, self.offsets, self.row_bytes):
            buf = o[dst]
            got = os.preadv(fd, [buf], off + first * rb)
            if got != buf.nbytes:
                raise WeightSpaceError(f"truncated shard: read {got} of {buf.nbytes} bytes", file=self.path)

    def close(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None
        self._map = self._arrays = None  # unmapped once no batch in progress holds the map

    def __del__(self) -> None:  # pragma: no cover - best effort
        self.close()


class AddressSpan:
    """``__array_interface__`` of a byte matrix over raw addresses: row ``i`` is the
    ``row_bytes`` bytes starting at address ``lo + i``. Indexing it with byte offsets
    gathers rows from several memory maps in one numpy call; only the indexed rows are
    read, and every offset used points into a live map (see ``NativeSource._gather``)."""

    def __init__(self, lo: int, hi: int, row_bytes: int):
        self.__array_interface__ = {"data": (lo, True), "shape": (hi - lo - row_bytes + 1, row_bytes),
                                    "strides": (1, 1), "typestr": "|u1", "version": 3}
