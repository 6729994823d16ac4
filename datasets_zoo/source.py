"""What every zoo reader provides: :class:`ZooSource`.

A :class:`ZooSource` is one opened zoo on disk: its architectures (``specs``), one
record per checkpoint (``records``, each with a ``spec_id``) and ``read(rows)``, which
returns the weights of some rows as one :class:`~wspace.WeightSpace`. ``datasets_zoo.Zoo``
wraps a source with views (filtering, selection) and never touches files itself. The
native reader (:mod:`datasets_zoo.format`) and every public-format adapter
(:mod:`datasets_zoo.adapters`) implement it.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from wspace.errors import WeightSpaceError
from wspace.space import WeightSpace
from wspace.spec import WeightSpaceSpec

__all__ = ["RECORD_FIELDS", "ZooSource", "record_value", "zoo_fingerprint"]

# Fields every record may carry; adapters fill what their format knows.
RECORD_FIELDS = ("id", "run", "seed", "task", "epoch", "hparams", "metrics")


class ZooSource:
    """An opened zoo: ``specs`` (id -> spec), ``records`` (one dict per checkpoint,
    each with ``spec_id``), ``meta`` and ``read(rows) -> WeightSpace``.

    Subclasses set the attributes in ``__init__`` and implement :meth:`read`; rows are
    positions in ``records``, all of one spec, and the result keeps their order.
    """

    format: str = "?"

    def __init__(self, path: str | os.PathLike, specs: Mapping[str, WeightSpaceSpec], records: list[dict],
                 meta: dict | None = None):
        self.path = Path(path)
        self.specs = dict(specs)
        self.records = records
        self.meta = dict(meta or {})
        spec_ids = list(self.specs)
        code = {s: i for i, s in enumerate(spec_ids)}
        try:
            self.spec_codes = np.fromiter((code[r["spec_id"]] for r in records), dtype=np.int64, count=len(records))
        except KeyError as e:
            raise WeightSpaceError(f"a record names unknown spec id {e}; known: {spec_ids}", file=self.path) from e
        self.spec_ids = spec_ids

    def read(self, rows: np.ndarray) -> WeightSpace:  # pragma: no cover - abstract
        raise NotImplementedError

    def fingerprint(self) -> str:
        """A SHA-256 of what this zoo holds, for run fingerprints (:mod:`wspace.fingerprint`):
        its specs and every record (ids, tasks, hyperparameters, metrics). Not its path, so a
        moved or copied zoo keeps its fingerprint, a rebuilt or extended one does not. Native
        shards are immutable once listed and checked against the manifest's ids, so the
        records stand for the weights."""
        from wspace.fingerprint import digest

        return digest({"format": self.format, "specs": {k: s.fingerprint for k, s in self.specs.items()},
                       "records": self.records, "meta": self.meta})

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r}, {len(self.records)} checkpoints, specs={self.spec_ids})"


def record_value(record: Mapping[str, Any], name: str, default: Any = None) -> Any:
    """``record[name]``, else ``record["metrics"][name]``, else ``record["hparams"][name]``."""
    if name in record and not isinstance(record[name], dict):
        return record[name]
    for sub in ("metrics", "hparams"):
        d = record.get(sub)
        if isinstance(d, dict) and name in d:
            return d[name]
    return default


def zoo_fingerprint(zoo: Any) -> str:
    """The fingerprint of ``zoo``: a :class:`ZooSource`, or a ``datasets_zoo.Zoo`` (whose
    ``source`` gives it; a filtered view adds the ids it keeps)."""
    from wspace.fingerprint import digest

    source = getattr(zoo, "source", zoo)
    if not isinstance(source, ZooSource):
        raise WeightSpaceError(f"zoo_fingerprint expects a Zoo or a ZooSource, got {type(zoo).__name__}")
    fp = source.fingerprint()
    if source is not zoo and len(zoo) != len(source.records):
        fp = digest({"source": fp, "ids": [r.get("id") for r in zoo.records]})
    return fp
