"""The training networks of an audit, read chunk by chunk.

A :class:`Population` wraps an in-memory :class:`~wspace.WeightSpace` (chunks are views,
rows are gathers) or a zoo-like object with ``spec``, ``records`` and ``weights(indices)``
(e.g. ``datasets_zoo.Zoo``; not imported here, the core does not depend on it). A zoo is
read as contiguous row ranges, and scattered rows are gathered by reading the ranges that
hold them: the audit then holds one chunk of training networks at a time, whatever the
zoo's size, and no memory map keeps pages of the whole zoo resident.
"""
from __future__ import annotations

from typing import Any, Iterator

import torch

from ..errors import WeightSpaceError
from ..space import WeightSpace
from ..spec import WeightSpaceSpec

__all__ = ["Population", "DEFAULT_CHUNK_ENTRIES"]

#: default chunk: about this many weights (rows x parameters), 32 MB in float32
DEFAULT_CHUNK_ENTRIES = 8_000_000


class Population:
    """Networks of one architecture, streamed in chunks of rows.

    Args:
        source: a :class:`~wspace.WeightSpace` or a zoo-like object (``spec``, ``records``,
            ``weights(indices)``, ``__len__``).
        what: the population's name in error messages ("training", "reference"...).
        chunk_rows: rows per chunk (default: about :data:`DEFAULT_CHUNK_ENTRIES` weights).

    Raises:
        WeightSpaceError: an empty population or an unsupported type.
    """

    def __init__(self, source: Any, what: str = "training", chunk_rows: int | None = None):
        self.what = what
        self._ws: WeightSpace | None = None
        self._zoo: Any = None
        if isinstance(source, WeightSpace):
            self._ws = source.detach().to("cpu")
            self.records: list[dict] | None = None
            self.spec: WeightSpaceSpec = source.spec
            n = len(source)
        elif hasattr(source, "weights") and hasattr(source, "records"):
            self._zoo = source
            n = len(source)
            if n == 0:
                raise WeightSpaceError(f"the {what} zoo is empty", file=getattr(source, "path", None))
            self.records = source.records
            self.spec = source.spec
        else:
            raise WeightSpaceError(f"the {what} networks must be a WeightSpace or a Zoo, got {type(source).__name__}")
        if n == 0:
            raise WeightSpaceError(f"the {what} set is empty: an audit needs at least one {what} network")
        self._n = n
        self._checked = False  # in-memory weights: checked finite chunk by chunk on the first full pass
        self.chunk_rows = int(chunk_rows) if chunk_rows else max(64, min(4096, DEFAULT_CHUNK_ENTRIES
                                                                         // max(1, self.spec.num_params)))

    def __len__(self) -> int:
        return self._n

    @property
    def in_memory(self) -> bool:
        """Whether the networks are a WeightSpace already in memory (gathers are free)."""
        return self._ws is not None

    def _read(self, start: int, stop: int) -> WeightSpace:
        if self._ws is not None:
            ws = self._ws.map(lambda t: t[start:stop])
            if self._checked:  # a full pass found every weight finite
                return ws.map(lambda t: t.float())
            flat = ws.flatten()
            if not bool(torch.isfinite(flat).all()):
                bad = start + int(torch.nonzero(~torch.isfinite(flat).all(1))[0])
                raise WeightSpaceError(f"the {self.what} network at row {bad} has non-finite weights")
            return ws.map(lambda t: t.float())
        return self._zoo.weights(range(start, stop)).map(lambda t: t.float())

    def chunks(self, rows: int | None = None) -> Iterator[tuple[int, WeightSpace]]:
        """``(first row, networks)`` for consecutive chunks of ``rows`` rows (float32)."""
        size = max(1, int(rows or self.chunk_rows))
        for start in range(0, self._n, size):
            yield start, self._read(start, min(start + size, self._n))
        self._checked = True

    def rows(self, index: torch.Tensor | Any) -> WeightSpace:
        """The networks at ``index`` (any order, repeats allowed), float32.

        From a zoo the chunks holding them are read whole and the rows picked out: a
        sequential read, never a memory map whose touched pages would stay resident.
        """
        index = torch.as_tensor(index, dtype=torch.long).reshape(-1)
        if len(index) and (int(index.min()) < 0 or int(index.max()) >= self._n):
            raise WeightSpaceError(f"row index out of range for {self._n} {self.what} networks")
        if self._ws is not None:
            return self._ws.map(lambda t: t[index].float())
        if len(index) == 0:
            return WeightSpace(self.spec, [torch.zeros(0, *p.shape) for p in self.spec.params])
        wanted, inverse = torch.unique(index, sorted=True, return_inverse=True)
        parts, size = [], self.chunk_rows
        for start in torch.unique(wanted // size * size).tolist():
            stop = min(start + size, self._n)
            sel = wanted[(wanted >= start) & (wanted < stop)] - start
            parts.append(self._read(start, stop).map(lambda t: t[sel]))
        got = WeightSpace.cat(parts)
        return got.map(lambda t: t[inverse])
