"""Metadata tables of public zoos: CSV / JSON / JSONL rows, with values parsed from text."""
from __future__ import annotations

import csv
import gzip
import json
import os
from pathlib import Path
from typing import Any

from wspace.errors import WeightSpaceError

__all__ = ["parse_scalar", "read_table"]


def parse_scalar(text: str) -> Any:
    """A CSV/metadata string as int, float, bool, None or JSON value when it is one; else the string."""
    if not isinstance(text, str):
        return text
    s = text.strip()
    if s == "":
        return None
    low = s.lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null", "nan"):
        return None if low != "nan" else float("nan")
    try:
        return int(s)
    except ValueError:
        pass
    try:
        return float(s)
    except ValueError:
        pass
    if s[:1] in "[{":
        try:
            return json.loads(s)
        except json.JSONDecodeError:
            pass
    return text


def read_table(path: str | os.PathLike) -> list[dict]:
    """Rows of a CSV (``.csv``, ``.csv.gz``), JSON (list of rows or dict of columns) or JSONL file."""
    path = Path(path)
    name = path.name.lower()
    try:
        if name.endswith(".csv") or name.endswith(".csv.gz"):
            opener = gzip.open if name.endswith(".gz") else open
            with opener(path, "rt", newline="") as f:
                return [{k: parse_scalar(v) for k, v in row.items() if k is not None} for row in csv.DictReader(f)]
        if name.endswith(".jsonl"):
            with open(path) as f:
                return [json.loads(line) for line in f if line.strip()]
        if name.endswith(".json"):
            with open(path) as f:
                obj = json.load(f)
            if isinstance(obj, list):
                rows = obj
            elif isinstance(obj, dict) and obj and all(isinstance(v, list) for v in obj.values()):
                lengths = {len(v) for v in obj.values()}
                if len(lengths) != 1:
                    raise WeightSpaceError(f"JSON columns have different lengths {sorted(lengths)}", file=path)
                n = lengths.pop()
                rows = [{k: v[i] for k, v in obj.items()} for i in range(n)]
            elif isinstance(obj, dict):  # {id: {fields}}
                rows = [{"id": k, **v} if isinstance(v, dict) else {"id": k, "value": v} for k, v in obj.items()]
            else:
                raise WeightSpaceError("expected a list of rows or a dict of columns", file=path)
            if not all(isinstance(r, dict) for r in rows):
                raise WeightSpaceError("every row of the table must be an object", file=path)
            return rows
    except (OSError, EOFError, UnicodeDecodeError, json.JSONDecodeError, csv.Error) as e:
        raise WeightSpaceError(f"cannot read the table: {e}", file=path) from e
    raise WeightSpaceError("unknown table format (use .csv, .csv.gz, .json or .jsonl)", file=path)
