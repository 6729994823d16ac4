"""Rebuild an ``nn.Module`` from a spec's program (see :meth:`WeightSpaceSpec.build_module
<wspace.spec.WeightSpaceSpec.build_module>`): the registered family's class when the spec
names one, else ``nn.Sequential`` stacks with the same state_dict keys."""
from __future__ import annotations

import json
from collections import OrderedDict

from torch import nn

from ..errors import WeightSpaceError
from ..modules import ACTIVATIONS, GlobalAvgPool, Residual
from .records import Op, ParamSpec
from .registry import get_family


def build_module(
    program: tuple[Op, ...], params: tuple[ParamSpec, ...], family: str | None = None, family_kwargs: str = "{}"
) -> nn.Module:
    """An ``nn.Module`` (random init) with the state_dict keys of ``params``.

    Args:
        program: the spec's ops (``WeightSpaceSpec.program``).
        params: the spec's parameters (``WeightSpaceSpec.params``).
        family: a family registered with :func:`~wspace.spec.register_family`; when given,
            its class is instantiated with ``family_kwargs`` instead.
        family_kwargs: JSON of the family's constructor kwargs.
    """
    if family is not None:
        cls = get_family(family)
        return cls(**json.loads(family_kwargs))
    return _build_sequential(program, params)


def _build_sequential(ops: tuple[Op, ...], params: tuple[ParamSpec, ...]) -> nn.Sequential:
    return nn.Sequential(OrderedDict((op.name, _build_op(op, params)) for op in ops))


def _build_op(op: Op, params: tuple[ParamSpec, ...]) -> nn.Module:
    a = dict(op.attrs)
    if op.kind == "sequential":
        return _build_sequential(op.children, params)
    if op.kind == "residual":
        return Residual(_build_sequential(op.children[0].children, params))
    if op.kind in ("linear", "conv"):
        w = params[op.params[0]]
        bias = len(op.params) > 1
        if op.kind == "linear":
            return nn.Linear(w.shape[1], w.shape[0], bias=bias)
        conv = nn.Conv1d if a["dims"] == 1 else nn.Conv2d
        return conv(w.shape[1], w.shape[0], tuple(w.shape[2:]), stride=a["stride"], padding=a["padding"],
                    dilation=a["dilation"], bias=bias)
    if op.kind == "act":
        name = a.pop("name")
        return ACTIVATIONS[name](**a)
    if op.kind == "dropout":
        return nn.Dropout(a["p"])
    if op.kind == "pool":
        cls = {("max", 1): nn.MaxPool1d, ("max", 2): nn.MaxPool2d, ("avg", 1): nn.AvgPool1d, ("avg", 2): nn.AvgPool2d}
        return cls[(a["mode"], a["dims"])](a["kernel"], stride=a["stride"], padding=a["padding"], ceil_mode=a["ceil_mode"])
    if op.kind == "adaptive_pool":
        cls = {("max", 1): nn.AdaptiveMaxPool1d, ("max", 2): nn.AdaptiveMaxPool2d,
               ("avg", 1): nn.AdaptiveAvgPool1d, ("avg", 2): nn.AdaptiveAvgPool2d}
        return cls[(a["mode"], a["dims"])](1)
    if op.kind == "gap":
        return GlobalAvgPool()
    if op.kind == "flatten":
        return nn.Flatten()
    raise WeightSpaceError(f"unknown op kind '{op.kind}' in spec")
