"""The native zoo's on-disk layout: file names, ``zoo.json`` and the manifest, read and
validated (see :mod:`datasets_zoo.format` for the format itself)."""
from __future__ import annotations

import json
import os
import re
from collections import OrderedDict
from pathlib import Path

from wspace.errors import WeightSpaceError
from wspace.io import read_json
from wspace.spec import WeightSpaceSpec

__all__ = ["ZOO_FORMAT", "ZOO_FORMAT_VERSION", "ZOO_JSON", "MANIFEST", "SHARDS", "SHARD_RE", "RESERVED",
           "is_native_zoo", "read_zoo_json", "parse_specs", "read_manifest", "line_length"]

ZOO_FORMAT = "wspace.zoo"
ZOO_FORMAT_VERSION = 1
ZOO_JSON = "zoo.json"
MANIFEST = "manifest.jsonl"
SHARDS = "shards"
SHARD_RE = re.compile(r"^shard-(\d+)\.safetensors$")
RESERVED = ("spec_id", "shard", "row")  # manifest fields the writer sets


def is_native_zoo(path: str | os.PathLike) -> bool:
    """True if ``path`` is a directory with a native ``zoo.json``."""
    p = Path(path) / ZOO_JSON
    if not p.is_file():
        return False
    try:
        with open(p) as f:
            return json.load(f).get("format") == ZOO_FORMAT
    except (OSError, json.JSONDecodeError, AttributeError):
        return False


def read_zoo_json(path: Path) -> dict:
    """The validated ``zoo.json`` of the zoo directory ``path``."""
    f = path / ZOO_JSON
    doc = read_json(f, missing="not a native zoo (no zoo.json)")
    if not isinstance(doc, dict) or doc.get("format") != ZOO_FORMAT:
        raise WeightSpaceError(f"not a native zoo description (format is not '{ZOO_FORMAT}')", file=f)
    version = doc.get("format_version")
    if not isinstance(version, int) or version > ZOO_FORMAT_VERSION:
        raise WeightSpaceError(f"zoo format version {version!r} is not supported (this library reads up to "
                               f"{ZOO_FORMAT_VERSION})", file=f)
    specs = doc.get("specs", [])
    if not isinstance(specs, list) or not all(isinstance(s, dict) and "id" in s and "spec" in s for s in specs):
        raise WeightSpaceError("'specs' must be a list of {id, spec}", file=f)
    return doc


def parse_specs(doc: dict, path: Path) -> "OrderedDict[str, WeightSpaceSpec]":
    """The specs of a ``zoo.json`` document (id -> spec), in file order."""
    out: "OrderedDict[str, WeightSpaceSpec]" = OrderedDict()
    for s in doc["specs"]:
        try:
            out[str(s["id"])] = WeightSpaceSpec.from_dict(s["spec"])
        except WeightSpaceError as e:
            raise WeightSpaceError(f"spec '{s['id']}': {e}", file=path / ZOO_JSON) from e
    return out


def read_manifest(path: Path) -> tuple[list[dict], list[int], bool]:
    """Rows of ``manifest.jsonl``, the byte offset where each starts, and whether a torn
    last line (no trailing newline: an interrupted append) was dropped."""
    f = path / MANIFEST
    if not f.exists():
        return [], [], False
    data = f.read_bytes()
    torn = bool(data) and not data.endswith(b"\n")
    body = data[: data.rfind(b"\n") + 1] if torn else data
    lines = body.split(b"\n")[:-1] if body else []
    offsets, pos = [], 0
    for line in lines:
        offsets.append(pos)
        pos += len(line) + 1
    try:  # one C-level parse for the common, healthy case
        rows = json.loads(b"[" + b",".join(lines) + b"]") if lines else []
    except (json.JSONDecodeError, UnicodeDecodeError):
        rows = []
        for i, line in enumerate(lines):
            try:
                rows.append(json.loads(line))
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                raise WeightSpaceError(f"line {i + 1} is not valid JSON ({e}); the manifest is corrupt", file=f) from e
    for i, r in enumerate(rows):
        if not isinstance(r, dict) or not all(k in r for k in ("id", "spec_id", "shard", "row")):
            raise WeightSpaceError(f"line {i + 1} lacks one of id, spec_id, shard, row", file=f)
    return rows, offsets, torn


def line_length(manifest: Path, offsets: list[int]) -> int:
    """Length (with its newline) of the last complete manifest line."""
    with open(manifest, "rb") as f:
        f.seek(offsets[-1])
        line = f.readline()
    return len(line) if line.endswith(b"\n") else 0
