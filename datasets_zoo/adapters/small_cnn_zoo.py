"""Small CNN Zoo (Unterthiner et al., 2020): ``weights.npy`` + ``metrics.csv(.gz)`` + ``layout.csv``.

* ``weights.npy``: ``[rows, P]`` float matrix, memory-mapped (never loaded whole);
* ``metrics.csv`` / ``metrics.csv.gz``: one row per weights row (``config.*`` columns,
  ``modeldir``, ``step``, ``test_accuracy``, ``test_loss``, ``train_accuracy``,
  ``train_loss``);
* ``layout.csv``: ``varname, start_idx, end_idx, shape``; TensorFlow order (per layer
  the bias, then the kernel), kernels HWIO (conv) and ``[in, out]`` (dense).

The network (``dnn_predict_accuracy/train_network.py``, ``build_cnn``): Keras
``Conv2D(16, 3, strides=2)`` with the default ``padding="valid"`` and the activation
inside each conv, dropout, ``GlobalAveragePooling2D``, ``Dense(10)`` without activation.
Here: ``Conv2d(c_in, c_out, (kh, kw), stride=2)`` + activation per conv layer,
``GlobalAvgPool``, ``Linear``; kernels converted to OIHW and ``[out, in]``. A layout with
dense layers only (``dnn_architecture = fcn``) gives an MLP on flattened images.

Records: ``id`` = row index, ``run`` = ``modeldir``, ``epoch`` = ``step``, ``seed`` =
``config.random_seed``, ``task`` = ``config.dataset``, ``hparams`` = the ``config.*``
columns (prefix dropped), ``metrics`` = the accuracy/loss columns plus aliases
``test_acc`` / ``train_acc``. The activation varies across runs (relu / tanh), so a
zoo holds one spec per activation: ``zoo.filter(activation="relu").spec``.
"""
from __future__ import annotations

import math
import re
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from wspace.errors import WeightSpaceError
from wspace.modules import GlobalAvgPool
from wspace.space import WeightSpace
from wspace.spec import WeightSpaceSpec, spec_from_module

from .support import ZooSource, activation_module, read_table

NAME = "small_cnn_zoo"
_SHAPE_RE = re.compile(r"^\s*[\(\[]\s*(\d+(?:\s*,\s*\d+)*)?\s*,?\s*[\)\]]\s*$")
_METRICS = ("test_accuracy", "test_loss", "train_accuracy", "train_loss")


def detect(path: Path) -> bool:
    return (path / "weights.npy").is_file() and (path / "layout.csv").is_file()


def _metrics_file(path: Path) -> Path:
    for name in ("metrics.csv.gz", "metrics.csv"):
        if (path / name).is_file():
            return path / name
    raise WeightSpaceError("missing metrics.csv.gz / metrics.csv next to weights.npy", file=path / "metrics.csv.gz")


def parse_layout(path: Path, width: int) -> list[dict]:
    """Layers in order: ``{"name", "kind" conv|dense, "kernel": (s, e, shape), "bias": (s, e, shape)|None}``."""
    rows = read_table(path)
    layers: "OrderedDict[str, dict]" = OrderedDict()
    for i, row in enumerate(rows):
        try:
            var, s, e, shape_txt = str(row["varname"]), int(row["start_idx"]), int(row["end_idx"]), row["shape"]
        except (KeyError, TypeError, ValueError) as exc:
            raise WeightSpaceError(f"row {i + 1}: needs varname, start_idx, end_idx, shape ({exc})", file=path) from exc
        m = _SHAPE_RE.match(str(shape_txt))
        if m is None:  # parsed with a regex: never eval() a file's content
            raise WeightSpaceError(f"row {i + 1}: unknown shape string {shape_txt!r}", file=path, tensor=var)
        shape = tuple(int(v) for v in m.group(1).split(",")) if m.group(1) else ()
        base = re.sub(r":\d+$", "", var)
        if base.endswith("kernel"):
            role = "kernel"
        elif base.endswith("bias"):
            role = "bias"
        else:
            raise WeightSpaceError(
                f"row {i + 1}: unknown layout variable {var!r} (expected .../kernel:0 or .../bias:0)",
                file=path, tensor=var)
        if not (0 <= s <= e <= width) or e - s != math.prod(shape):
            raise WeightSpaceError(f"row {i + 1}: columns [{s}, {e}) do not fit shape {shape} in a matrix of width "
                                   f"{width}", file=path, tensor=var)
        name = base[: -len(role)].rstrip("/") or f"layer{len(layers)}"
        entry = layers.setdefault(name, {"name": name})
        if role in entry:
            raise WeightSpaceError(f"row {i + 1}: '{var}' appears twice", file=path, tensor=var)
        entry[role] = (s, e, shape)
    out = []
    for name, entry in layers.items():
        if "kernel" not in entry:
            raise WeightSpaceError(f"layer '{name}' has a bias but no kernel", file=path)
        ndim = len(entry["kernel"][2])
        if ndim not in (2, 4):
            raise WeightSpaceError(
                f"layer '{name}': kernel of shape {entry['kernel'][2]} is neither HWIO nor [in, out]",
                file=path, tensor=name)
        entry["kind"] = "conv" if ndim == 4 else "dense"
        out_f = entry["kernel"][2][-1]
        if "bias" in entry and entry["bias"][2] != (out_f,):
            raise WeightSpaceError(f"layer '{name}': bias shape {entry['bias'][2]} does not match {out_f} outputs",
                                   file=path, tensor=name)
        entry.setdefault("bias", None)
        out.append(entry)
    if not out:
        raise WeightSpaceError("empty layout", file=path)
    kinds = [l["kind"] for l in out]
    last_conv = max((i for i, k in enumerate(kinds) if k == "conv"), default=-1)
    if "dense" in kinds and kinds.index("dense") < last_conv:
        raise WeightSpaceError("a dense layer comes before a conv layer; not the Small CNN Zoo architecture", file=path)
    return out


def _key(name: str, used: set[str]) -> str:
    k = re.sub(r"\W", "_", name.rsplit("/", 1)[-1]) or "layer"
    while k in used:
        k += "_"
    used.add(k)
    return k


def build_module(layers: list[dict], activation: str, stride: int) -> nn.Sequential:
    """The PyTorch network equivalent to a Small CNN Zoo layout (meta device)."""
    mods: "OrderedDict[str, nn.Module]" = OrderedDict()
    used: set[str] = set()
    convs = [l for l in layers if l["kind"] == "conv"]
    dense = [l for l in layers if l["kind"] == "dense"]
    for i, l in enumerate(convs):
        kh, kw, c_in, c_out = l["kernel"][2]
        l["key"] = _key(l["name"], used)
        mods[l["key"]] = nn.Conv2d(c_in, c_out, (kh, kw), stride=stride, bias=l["bias"] is not None, device="meta")
        mods[_key(f"act{i}", used)] = activation_module(activation)
    if convs:
        mods[_key("gap", used)] = GlobalAvgPool()
    for i, l in enumerate(dense):
        c_in, c_out = l["kernel"][2]
        l["key"] = _key(l["name"], used)
        mods[l["key"]] = nn.Linear(c_in, c_out, bias=l["bias"] is not None, device="meta")
        if i < len(dense) - 1:
            mods[_key(f"act_d{i}", used)] = activation_module(activation)
    return nn.Sequential(mods)


class SmallCNNZooSource(ZooSource):
    format = NAME

    def __init__(self, path: Path, *, activation: str | None = None, stride: int = 2):
        wfile = path / "weights.npy"
        try:
            self.weights = np.load(wfile, mmap_mode="r")
        except (ValueError, OSError, EOFError) as e:
            raise WeightSpaceError(f"cannot memory-map the weight matrix (truncated or corrupt?): {e}",
                                   file=wfile) from e
        if self.weights.ndim != 2:
            raise WeightSpaceError(f"expected a 2-d [rows, params] matrix, found shape {self.weights.shape}",
                                   file=wfile)
        self.wfile = wfile
        self.layers = parse_layout(path / "layout.csv", self.weights.shape[1])
        mfile = _metrics_file(path)
        rows = read_table(mfile)
        if len(rows) != self.weights.shape[0]:
            raise WeightSpaceError(f"{len(rows)} metric rows but weights.npy has {self.weights.shape[0]} rows",
                                   file=mfile)
        records = []
        specs: "OrderedDict[str, WeightSpaceSpec]" = OrderedDict()
        for i, row in enumerate(rows):
            hp = {k[len("config."):]: v for k, v in row.items() if k.startswith("config.")}
            act = activation or hp.get("activation") or "relu"
            sid = f"cnn-{act}"
            if sid not in specs:
                try:
                    specs[sid] = spec_from_module(build_module(self.layers, act, stride))
                except WeightSpaceError as e:
                    raise WeightSpaceError(f"the layout does not form a network with activation '{act}' (metrics row "
                                           f"{i + 1}): {e}", file=path / "layout.csv") from e
            metrics = {k: row[k] for k in _METRICS if k in row}
            if "test_accuracy" in metrics:
                metrics["test_acc"] = metrics["test_accuracy"]
            if "train_accuracy" in metrics:
                metrics["train_acc"] = metrics["train_accuracy"]
            step = row.get("step")
            records.append({
                "id": str(i), "run": row.get("modeldir"), "seed": hp.get("random_seed"), "task": hp.get("dataset"),
                "epoch": int(step) if isinstance(step, (int, float)) else step, "activation": act,
                "hparams": hp, "metrics": metrics, "spec_id": sid,
            })
        super().__init__(path, specs, records, {"source_format": NAME})

    def __getstate__(self) -> dict:  # re-open the memory map in DataLoader workers
        state = self.__dict__.copy()
        state["weights"] = None
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.weights = np.load(self.wfile, mmap_mode="r")

    def read(self, rows: np.ndarray) -> WeightSpace:
        rows = np.asarray(rows, dtype=np.int64)
        spec = self.specs[self.spec_ids[int(self.spec_codes[rows[0]])]]
        order = np.argsort(rows, kind="stable")
        try:
            data = torch.from_numpy(np.ascontiguousarray(self.weights[rows[order]], dtype=np.float32))
        except (ValueError, OSError) as e:
            raise WeightSpaceError(f"cannot read rows: {e}", file=self.wfile) from e
        data = data[torch.from_numpy(np.argsort(order))]  # back to the requested order
        B = data.shape[0]
        by_key = {}
        for l in self.layers:
            s, e, shape = l["kernel"]
            k = data[:, s:e].reshape(B, *shape)
            # TF -> PyTorch: HWIO -> OIHW for convs, [in, out] -> [out, in] for dense.
            k = k.permute(0, 4, 3, 1, 2) if l["kind"] == "conv" else k.transpose(1, 2)
            by_key[f"{l['key']}.weight"] = k.contiguous()
            if l["bias"] is not None:
                s, e, _ = l["bias"]
                by_key[f"{l['key']}.bias"] = data[:, s:e].contiguous()
        for key, t in by_key.items():
            bad = ~torch.isfinite(t.reshape(B, -1)).all(1)
            if bool(bad.any()):
                r = int(rows[int(torch.nonzero(bad)[0])])
                raise WeightSpaceError(f"non-finite weights in row {r}", file=self.wfile, tensor=key)
        return WeightSpace(spec, [by_key[k] for k in spec.keys])


def open_source(path: Path, **kwargs: Any) -> SmallCNNZooSource:
    """Read a Small CNN Zoo directory (``activation=`` overrides ``config.activation``)."""
    return SmallCNNZooSource(path, **kwargs)
