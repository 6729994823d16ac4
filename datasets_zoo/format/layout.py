"""The native zoo's on-disk layout: file names, ``zoo.json`` and the manifest, read and
validated (see :mod:`datasets_zoo.format` for the format itself)."""
from __future__ import annotations

import json
import os
import re
from collections import OrderedDict
from pathlib import Path

from wspace.errors import WeightSpaceError
from wspace.io import parse_spec, read_json
from wspace.spec import WeightSpaceSpec

__all__ = ["ZOO_FORMAT", "ZOO_FORMAT_VERSION", "ZOO_JSON", "MANIFEST", "SHARDS", "SHARD_RE", "RESERVED", "SHARD_IDS_KEY", "SHARD_SPEC_KEY",
           "is_native_zoo", "read_zoo_json", "parse_specs", "check_shard_name", "read_manifest", "line_length"]

ZOO_FORMAT = "wspace.zoo"
ZOO_FORMAT_VERSION = 1
ZOO_JSON = "zoo.json"
MANIFEST = "manifest.jsonl"
SHARDS = "shards"
SHARD_RE = re.compile(r"^shard-(\d+)\.safetensors$")
RESERVED = ("spec_id", "shard", "row")  # manifest fields the writer sets
SHARD_IDS_KEY = "wspace.zoo.ids"  # shard metadata: JSON list of the checkpoint id of each row
SHARD_SPEC_KEY = "wspace.zoo.spec_id"  # shard metadata: the spec id its rows have in zoo.json


def is_native_zoo(path: str | os.PathLike) -> bool:
    """True if ``path`` is a directory with a native ``zoo.json``: one that says
    ``"format": "wspace.zoo"``, or one that cannot be read as JSON at all (a truncated or
    corrupt description is reported as a corrupt native zoo when opened, not mistaken for
    another format). A valid JSON document of another format is not native."""
    p = Path(path) / ZOO_JSON
    if not p.is_file():
        return False
    try:
        with open(p, encoding="utf-8") as f:
            doc = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        return True  # ours, damaged: NativeSource says what is wrong
    except OSError:
        return True
    return not isinstance(doc, dict) or doc.get("format") == ZOO_FORMAT


def read_zoo_json(path: Path) -> dict:
    """The validated ``zoo.json`` of the zoo directory ``path``."""
    f = path / ZOO_JSON
    if not f.exists():
        raise WeightSpaceError("not a native zoo (no zoo.json)", file=f)
    try:
        doc = read_json(f)
    except WeightSpaceError as e:
        raise WeightSpaceError(f"corrupt native zoo description ({e.problem}); restore it from a copy or rebuild "
                               "the zoo", file=f) from e
    if not isinstance(doc, dict) or doc.get("format") != ZOO_FORMAT:
        raise WeightSpaceError(f"not a native zoo description (format is not '{ZOO_FORMAT}')", file=f)
    version = doc.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version > ZOO_FORMAT_VERSION:
        raise WeightSpaceError(f"zoo format version {version!r} is not supported (this library reads up to "
                               f"{ZOO_FORMAT_VERSION})", file=f)
    specs = doc.get("specs", [])
    if not isinstance(specs, list) or not all(isinstance(s, dict) and isinstance(s.get("id"), str) and "spec" in s
                                              for s in specs):
        raise WeightSpaceError("'specs' must be a list of {id (a string), spec}", file=f)
    if len({s["id"] for s in specs}) != len(specs):
        raise WeightSpaceError("'specs' lists a spec id twice", file=f)
    if not isinstance(doc.get("meta", {}), (dict, type(None))):
        raise WeightSpaceError("'meta' must be an object", file=f)
    return doc


def parse_specs(doc: dict, path: Path) -> "OrderedDict[str, WeightSpaceSpec]":
    """The specs of a ``zoo.json`` document (id -> spec), in file order."""
    out: "OrderedDict[str, WeightSpaceSpec]" = OrderedDict()
    for s in doc["specs"]:
        out[str(s["id"])] = parse_spec(s["spec"], path / ZOO_JSON, f"spec '{s['id']}'")
    return out


def check_shard_name(name: object) -> str | None:
    """Why ``name`` (a manifest row's ``shard``) is not a plain file name inside ``shards/``,
    or None when it is one. Shards live in the zoo folder: no directories, ``..`` or
    absolute paths."""
    if not isinstance(name, str) or not name:
        return f"must be a file name (a non-empty string), got {name!r}"
    if name in (".", "..") or "/" in name or "\\" in name or "\x00" in name or os.path.isabs(name) \
            or (len(name) > 1 and name[1] == ":"):
        return f"{name!r} is not a plain file name: a shard must lie in the zoo's shards/ folder"
    return None


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
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        rows = []
        for i, line in enumerate(lines):
            try:
                rows.append(json.loads(line))
            except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
                raise WeightSpaceError(f"line {i + 1} is not valid JSON ({e}); the manifest is corrupt", file=f) from e
    for i, r in enumerate(rows):
        if not isinstance(r, dict) or not all(k in r for k in ("id", "spec_id", "shard", "row")):
            raise WeightSpaceError(f"line {i + 1} lacks one of id, spec_id, shard, row", file=f)
        if not isinstance(r["id"], str) or not r["id"]:
            raise WeightSpaceError(f"line {i + 1}: 'id' must be a non-empty string, got {r['id']!r}", file=f)
        if not isinstance(r["spec_id"], str):
            raise WeightSpaceError(f"line {i + 1}: 'spec_id' must be a string, got {r['spec_id']!r}", file=f)
        bad = check_shard_name(r["shard"])
        if bad:
            raise WeightSpaceError(f"line {i + 1}: 'shard' {bad}", file=f)
        row = r["row"]
        if not isinstance(row, int) or isinstance(row, bool) or row < 0:
            raise WeightSpaceError(f"line {i + 1}: 'row' must be a non-negative integer, got {row!r}", file=f)
    return rows, offsets, torn


def line_length(manifest: Path, offsets: list[int]) -> int:
    """Length (with its newline) of the last complete manifest line."""
    with open(manifest, "rb") as f:
        f.seek(offsets[-1])
        line = f.readline()
    return len(line) if line.endswith(b"\n") else 0
