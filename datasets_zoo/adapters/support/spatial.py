"""Specs of CNNs that flatten a spatial map into a linear layer (the Model Zoos CNNs)."""
from __future__ import annotations

from collections import OrderedDict

from torch import nn

from wspace.errors import WeightSpaceError
from wspace.spec import GroupSpec, Op, ParamSpec, WeightSpaceSpec, spec_from_module

__all__ = ["spec_with_spatial_flatten"]

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
