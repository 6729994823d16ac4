"""What every zoo reader provides, and the helpers the public-format adapters share.

A :class:`ZooSource` is one opened zoo on disk: its architectures (``specs``), one
record per checkpoint (``records``, each with a ``spec_id``) and ``read(rows)``, which
returns the weights of some rows as one :class:`~wspace.WeightSpace`. ``datasets_zoo.Zoo``
wraps a source with views (filtering, selection) and never touches files itself.

Helpers here: spec inference for state_dict-only formats (:func:`infer_mlp_spec`),
a spec builder for CNNs that flatten a spatial map into a linear layer
(:func:`spec_with_spatial_flatten`), safe torch state_dict loading for files without
an extension, and :class:`FileSource` (one file per checkpoint).
"""
from __future__ import annotations

import csv
import gzip
import json
import math
import os
import re
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from wspace import io as wio
from wspace.errors import WeightSpaceError
from wspace.modules import Sine
from wspace.space import WeightSpace
from wspace.spec import GroupSpec, Op, ParamSpec, WeightSpaceSpec, spec_from_module

__all__ = [
    "ZooSource",
    "FileSource",
    "infer_mlp_spec",
    "spec_with_spatial_flatten",
    "activation_module",
    "load_torch_file",
    "read_safetensors_header",
    "read_table",
    "parse_scalar",
    "record_value",
]

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

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r}, {len(self.records)} checkpoints, specs={self.spec_ids})"


# --------------------------------------------------------------------------- records
def record_value(record: Mapping[str, Any], name: str, default: Any = None) -> Any:
    """``record[name]``, else ``record["metrics"][name]``, else ``record["hparams"][name]``."""
    if name in record and not isinstance(record[name], dict):
        return record[name]
    for sub in ("metrics", "hparams"):
        d = record.get(sub)
        if isinstance(d, dict) and name in d:
            return d[name]
    return default


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


# safetensors dtype tags -> numpy (little-endian); BF16 is read as uint16 and viewed.
_NP_DTYPES = {
    "F64": np.dtype("<f8"), "F32": np.dtype("<f4"), "F16": np.dtype("<f2"), "BF16": np.dtype("<u2"),
    "I64": np.dtype("<i8"), "I32": np.dtype("<i4"), "I16": np.dtype("<i2"), "I8": np.dtype("i1"),
    "U8": np.dtype("u1"), "BOOL": np.dtype("?"),
}


# --------------------------------------------------------------------------- safetensors header
def read_safetensors_header(path: str | os.PathLike) -> tuple[dict[str, dict], dict[str, str], int]:
    """Parse a safetensors header without reading tensor data.

    Returns ``(tensors, metadata, data_start)`` where ``tensors`` maps name ->
    ``{"dtype", "shape", "data_offsets"}`` (file order). Raises naming the file if it
    is missing, truncated or malformed.
    """
    path = Path(path)
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise WeightSpaceError("truncated safetensors file (no header)", file=path)
            n = int.from_bytes(head, "little")
            if n > size - 8:
                raise WeightSpaceError("truncated safetensors file (header longer than the file)", file=path)
            header = json.loads(f.read(n), object_pairs_hook=OrderedDict)
    except FileNotFoundError as e:
        raise WeightSpaceError("file not found", file=path) from e
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise WeightSpaceError(f"corrupt safetensors header: {e}", file=path) from e
    if not isinstance(header, dict):
        raise WeightSpaceError("corrupt safetensors header (not an object)", file=path)
    meta = dict(header.pop("__metadata__", None) or {})
    data_start = 8 + n
    end = 0
    for name, info in header.items():
        try:
            b, e = info["data_offsets"]
            shape = [int(s) for s in info["shape"]]
            dtype = _NP_DTYPES[info["dtype"]]
        except (KeyError, TypeError, ValueError) as exc:
            raise WeightSpaceError(f"corrupt safetensors header entry ({exc})", file=path, tensor=name) from exc
        if e - b != math.prod(shape) * dtype.itemsize or b < 0:
            raise WeightSpaceError("corrupt safetensors header: offsets do not match the shape", file=path, tensor=name)
        end = max(end, e)
    if data_start + end > size:
        raise WeightSpaceError(
            f"truncated file: the header announces {data_start + end} bytes, the file has {size}", file=path)
    return header, meta, data_start


# --------------------------------------------------------------------------- file loading
def load_torch_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """A state_dict from ``.safetensors`` / ``.pt`` / ``.pth`` or an extension-less torch file
    (Model Zoos' ``checkpoints``), always with ``weights_only=True`` and finite-checked."""
    path = Path(path)
    if path.suffix in (".safetensors", ".pt", ".pth", ".bin", ".ckpt"):
        return wio.load_state_dict(path)
    if not path.exists():
        raise WeightSpaceError("file not found", file=path)
    # wspace.io.load_state_dict dispatches on the extension; these files have none.
    sd = wio._load_torch(path)  # noqa: SLF001 - the same safe loader (weights_only=True)
    wio.check_finite(sd, path)
    return sd


def state_dict_layout(path: str | os.PathLike) -> list[tuple[str, tuple[int, ...]]]:
    """``[(key, shape)]`` of a checkpoint in file order; safetensors: from the header only."""
    path = Path(path)
    if path.suffix == ".safetensors":
        info, _, _ = read_safetensors_header(path)
        return [(k, tuple(v["shape"])) for k, v in info.items()]
    sd = load_torch_file(path)
    return [(k, tuple(v.shape)) for k, v in sd.items()]


# --------------------------------------------------------------------------- spec inference
_ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "leakyrelu": nn.LeakyReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "elu": nn.ELU,
    "softplus": nn.Softplus,
    "identity": nn.Identity,
    "linear": nn.Identity,
}


def activation_module(name: str | nn.Module, w0: float = 30.0) -> nn.Module:
    """An activation module from a name (``relu``, ``tanh``, ``sine`` with ``w0``, ...)."""
    if isinstance(name, nn.Module):
        return name
    key = str(name).lower()
    if key in ("sine", "sin", "siren"):
        return Sine(float(w0))
    if key not in _ACTIVATIONS:
        raise WeightSpaceError(f"unknown activation '{name}'; known: {sorted(_ACTIVATIONS) + ['sine']}")
    return _ACTIVATIONS[key]()


def _w0_list(w0: float | Sequence[float], n: int) -> list[float]:
    if isinstance(w0, (int, float)):
        return [float(w0)] * n
    w0 = [float(v) for v in w0]
    if len(w0) != n:
        raise WeightSpaceError(f"w0 has {len(w0)} values but the network has {n} activations")
    return w0


def infer_mlp_spec(
    layout: Sequence[tuple[str, Sequence[int]]],
    *,
    activation: str | nn.Module = "relu",
    w0: float | Sequence[float] = 30.0,
    ignore: Iterable[str] = (),
    file: str | os.PathLike | None = None,
) -> WeightSpaceSpec:
    """Infer an MLP / SIREN spec from a state_dict's ``(key, shape)`` list in file order.

    Parameters are grouped into layers by key prefix (``seq.0.weight`` + ``seq.0.bias``);
    every weight must be 2-D and consecutive layers must chain (``in == previous out``).
    An ``activation`` (default ``relu``; ``"sine"`` uses ``w0``, a float or one value per
    activation) follows every layer but the last. The spec keeps the file's keys, so
    ``spec.build_module().load_state_dict(sd)`` works.

    Raises:
        WeightSpaceError: naming ``file``, for conv weights (their pooling, padding and
            activations are not in a state_dict: pass ``spec=``), non-chaining shapes or
            keys that are not ``<prefix>.weight`` / ``<prefix>.bias``.
    """
    ignore = set(ignore)
    layers: "OrderedDict[str, dict]" = OrderedDict()
    for key, shape in layout:
        if key in ignore or key.endswith("num_batches_tracked"):
            continue
        shape = tuple(int(s) for s in shape)
        if key.endswith(".weight"):
            prefix, role = key[: -len(".weight")], "weight"
        elif key.endswith(".bias"):
            prefix, role = key[: -len(".bias")], "bias"
        else:
            raise WeightSpaceError(
                "cannot infer an MLP: the key is neither '<layer>.weight' nor '<layer>.bias'; pass spec=", file=file,
                tensor=key)
        if not prefix:
            raise WeightSpaceError("cannot infer an MLP from a bare 'weight' key; pass spec=", file=file, tensor=key)
        entry = layers.setdefault(prefix, {})
        if role in entry:
            raise WeightSpaceError("duplicate key", file=file, tensor=key)
        entry[role] = (key, shape)
    if not layers:
        raise WeightSpaceError("no weight tensors found", file=file)
    chain: list[tuple[str, int, int, bool]] = []  # prefix, in, out, has bias
    prev_out = None
    for prefix, entry in layers.items():
        if "weight" not in entry:
            raise WeightSpaceError("bias without a weight", file=file, tensor=entry["bias"][0])
        wkey, wshape = entry["weight"]
        if len(wshape) != 2:
            kind = "a convolution" if len(wshape) in (3, 4) else f"a {len(wshape)}-d weight"
            raise WeightSpaceError(
                f"has shape {wshape} ({kind}); only MLPs/SIRENs are inferred from state_dicts because pooling, "
                "padding and activations are not stored in them: pass spec= (e.g. spec_from_module(model))",
                file=file, tensor=wkey)
        out_f, in_f = wshape
        if "bias" in entry and entry["bias"][1] != (out_f,):
            raise WeightSpaceError(f"has shape {entry['bias'][1]}, expected ({out_f},) to match '{wkey}'",
                                   file=file, tensor=entry["bias"][0])
        if prev_out is not None and in_f != prev_out:
            raise WeightSpaceError(
                f"takes {in_f} inputs but the previous layer has {prev_out} outputs: not a plain MLP; pass spec=",
                file=file, tensor=wkey)
        prev_out = out_f
        chain.append((prefix, in_f, out_f, "bias" in entry))
    w0s = _w0_list(w0, len(chain) - 1)
    # Build a module tree whose parameter paths equal the file's keys, activations as siblings.
    root: "OrderedDict[str, Any]" = OrderedDict()
    closed: set[tuple[str, ...]] = set()
    last_container: tuple[str, ...] = ()
    for i, (prefix, in_f, out_f, has_bias) in enumerate(chain):
        parts = prefix.split(".")
        container = tuple(parts[:-1])
        # A container left earlier cannot be re-entered: the execution order would change.
        for k in range(len(last_container), 0, -1):
            if container[:k] != last_container[:k]:
                closed.add(last_container[:k])
        for k in range(1, len(container) + 1):
            if container[:k] in closed:
                raise WeightSpaceError(
                    f"layer '{prefix}' re-enters module '{'.'.join(container[:k])}' after other layers: the execution "
                    "order cannot be inferred; pass spec=", file=file)
        node = root
        for part in container:
            child = node.get(part)
            if child is None:
                child = node[part] = OrderedDict()
            elif not isinstance(child, OrderedDict):
                raise WeightSpaceError(f"'{part}' is both a layer and a module container; pass spec=", file=file)
            node = child
        if parts[-1] in node:
            raise WeightSpaceError(f"layer name '{prefix}' is used twice; pass spec=", file=file)
        node[parts[-1]] = nn.Linear(in_f, out_f, bias=has_bias, device="meta")
        if i < len(chain) - 1:
            name = f"act{i}"
            while name in node:
                name = "_" + name
            node[name] = activation_module(activation, w0s[i]) if not isinstance(activation, nn.Module) else activation
        last_container = container

    def build(tree: "OrderedDict[str, Any]") -> nn.Sequential:
        return nn.Sequential(OrderedDict((k, build(v) if isinstance(v, OrderedDict) else v) for k, v in tree.items()))

    spec = spec_from_module(build(root))
    expected = [k for k, _ in layout if k not in ignore and not k.endswith("num_batches_tracked")]
    if sorted(spec.keys) != sorted(expected):  # pragma: no cover - guards the tree construction
        raise WeightSpaceError(f"inferred keys {spec.keys} differ from the file's {expected}", file=file)
    return spec


# --------------------------------------------------------------------------- spatial flatten
_SURROGATE_POOL = "__wspace_flatten_pool__"


def spec_with_spatial_flatten(model: nn.Sequential) -> WeightSpaceSpec:
    """``spec_from_module`` for CNNs that ``Flatten`` a spatial map into a ``Linear`` layer.

    The core spec rejects that pattern because a channel permutation acts on blocks of
    ``H*W`` features there. Such networks (the Model Zoos CNNs) are still exact to
    evaluate: the channels before the flatten and the linear layer's input axis are
    marked as *fixed* (group ``None``), so every symmetry operation leaves them alone.
    Other layers keep their permutation groups. Networks without that pattern get the
    plain ``spec_from_module`` result.
    """
    try:
        return spec_from_module(model)
    except WeightSpaceError as e:
        if "Flatten" not in str(e):
            raise
    # Surrogate: global pooling before each spatial Flatten and a Linear that reads the
    # channels. Its spec has the right groups except at the flatten; patch those.
    patched: dict[str, tuple[int, int]] = {}  # linear key prefix -> (real in_features, channels)

    def rewrite(seq: nn.Sequential, prefix: str, state: dict) -> nn.Sequential:
        out: "OrderedDict[str, nn.Module]" = OrderedDict()
        for name, m in seq.named_children():
            path = f"{prefix}{name}"
            if isinstance(m, nn.Sequential):
                out[name] = rewrite(m, f"{path}.", state)
                continue
            if isinstance(m, (nn.Conv1d, nn.Conv2d)):
                state["channels"], state["spatial"] = m.out_channels, m.weight.dim() - 2
            elif isinstance(m, (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool1d,
                                nn.AdaptiveMaxPool2d)) or type(m).__name__ == "GlobalAvgPool":
                state["spatial"] = 0
            elif isinstance(m, nn.Flatten) and state.get("spatial"):
                pool = nn.AdaptiveAvgPool1d(1) if state["spatial"] == 1 else nn.AdaptiveAvgPool2d(1)
                out[_SURROGATE_POOL + str(len(state["pools"]))] = pool
                state["pools"].append(path)
                state["pending"] = True
                state["spatial"] = 0
            elif isinstance(m, nn.Linear) and state.pop("pending", False):
                c = state["channels"]
                if m.in_features % c:
                    raise WeightSpaceError(f"submodule '{path}' (Linear): {m.in_features} inputs are not a whole "
                                           f"number of spatial maps of {c} channels")
                patched[path] = (m.in_features, c)
                m = nn.Linear(c, m.out_features, bias=m.bias is not None, device="meta")
            out[name] = m
        return nn.Sequential(out)

    surrogate = rewrite(model, "", {"pools": []})
    sspec = spec_from_module(surrogate)
    fixed_groups: set[int] = set()
    params = list(sspec.params)
    for i, p in enumerate(params):
        prefix = p.key.rsplit(".", 1)[0]
        if p.role == "weight" and prefix in patched:
            in_features, _ = patched[prefix]
            if p.axes[1] is not None:
                fixed_groups.add(p.axes[1])
            params[i] = ParamSpec(p.key, (p.shape[0], in_features), p.role, (p.axes[0], None), p.layer)
    renum = {}
    groups = []
    for g in sspec.groups:
        if g.id in fixed_groups:
            continue
        renum[g.id] = len(groups)
        groups.append(GroupSpec(len(groups), g.size, g.symmetries, g.stream))

    def axis(a):
        return None if a is None or a in fixed_groups else renum[a]

    params = [ParamSpec(p.key, p.shape, p.role, tuple(axis(a) for a in p.axes), p.layer) for p in params]

    def strip(ops: tuple[Op, ...]) -> tuple[Op, ...]:
        return tuple(Op(o.kind, o.name, o.attrs, o.params, strip(o.children))
                     for o in ops if not o.name.startswith(_SURROGATE_POOL))

    return WeightSpaceSpec(
        params=tuple(params), program=strip(sspec.program), groups=tuple(groups), input_dims=sspec.input_dims,
        in_features=sspec.in_features, out_features=sspec.out_features,
    )


# --------------------------------------------------------------------------- one file per checkpoint
class FileSource(ZooSource):
    """Checkpoints stored one file each (``files[i]`` for ``records[i]``), or several per file
    when ``file_rows[i]`` is set (stacked ``save_weight_space`` files).

    ``read`` opens each needed file once, validates its keys/shapes against the spec and
    stacks. ``ignore_keys`` are dropped from every state_dict (e.g. a stored ``label``).
    ``origin`` names the file the spec was inferred from, so a mismatch names both files.
    """

    def __init__(self, path, specs, records, files: Sequence[Path], *, meta: dict | None = None,
                 file_rows: Sequence[int | None] | None = None, ignore_keys: Iterable[str] = (),
                 origin: Path | None = None, fmt: str = "files"):
        super().__init__(path, specs, records, meta)
        self.files = [Path(f) for f in files]
        self.file_rows = list(file_rows) if file_rows is not None else [None] * len(self.files)
        self.ignore_keys = set(ignore_keys)
        self.origin = origin
        self.format = fmt

    def _load(self, f: Path, spec: WeightSpaceSpec, stacked: bool) -> list[torch.Tensor]:
        if stacked:
            ws = wio.load_weight_space(f)
            if ws.spec.keys != spec.keys or ws.spec.shapes != spec.shapes:
                raise WeightSpaceError(self._mismatch("stacked file holds a different architecture"), file=f)
            return list(ws.tensors)
        sd = load_torch_file(f)
        for k in self.ignore_keys:
            sd.pop(k, None)
        try:
            wio.validate_state_dict(sd, spec, f)
        except WeightSpaceError as e:
            raise WeightSpaceError(self._mismatch(e.problem), file=f, tensor=e.tensor) from e
        return [sd[k] for k in spec.keys]

    def _mismatch(self, problem: str) -> str:
        if self.origin is None:
            return problem
        return f"{problem} (the zoo's architecture was taken from '{self.origin}'; a zoo holds one architecture)"

    def read(self, rows: np.ndarray) -> WeightSpace:
        rows = np.asarray(rows, dtype=np.int64)
        spec = self.specs[self.spec_ids[int(self.spec_codes[rows[0]])]]
        cache: dict[Path, list[torch.Tensor]] = {}
        per_row: list[list[torch.Tensor]] = []
        for r in rows.tolist():
            f, b = self.files[r], self.file_rows[r]
            if f not in cache:
                cache[f] = self._load(f, spec, b is not None)
            ts = cache[f]
            per_row.append([t[b] for t in ts] if b is not None else ts)
        tensors = [torch.stack([pr[i] for pr in per_row]) for i in range(len(spec.params))]
        dtype = tensors[0].dtype if tensors[0].is_floating_point() else torch.float32
        return WeightSpace(spec, [t.to(dtype) for t in tensors])


def relative_id(path: Path, root: Path) -> str:
    """``path`` relative to ``root`` (posix), without the checkpoint extension."""
    try:
        rel = path.relative_to(root)
    except ValueError:
        rel = path
    s = rel.as_posix()
    return re.sub(r"\.(safetensors|pth|pt|bin|ckpt)$", "", s)
