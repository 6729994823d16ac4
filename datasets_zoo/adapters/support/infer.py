"""Spec inference for state_dict-only formats: an MLP / SIREN from ``(key, shape)`` pairs."""
from __future__ import annotations

import os
from collections import OrderedDict
from typing import Any, Iterable, Sequence

from torch import nn

from wspace.errors import WeightSpaceError
from wspace.modules import activation_module
from wspace.spec import WeightSpaceSpec, spec_from_module

__all__ = ["infer_mlp_spec"]


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
