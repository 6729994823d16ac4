"""``wspace info``: versions, or the spec of a small built-in example architecture."""
from __future__ import annotations

import json
import platform
import sys
from typing import Any

from wspace import __version__

EXIT_USAGE = 2

__all__ = ["main", "example_module", "versions", "EXAMPLE_ARCHS"]


def example_module(arch: str, width: int = 16, depth: int = 2):
    """A small built-in example architecture (``mlp``, ``cnn``, ``siren``, ``resmlp``)."""
    from torch import nn

    from wspace.modules import GlobalAvgPool, Residual, Sine

    if width < 1 or depth < 1:
        raise ValueError(f"width and depth must be >= 1, got width={width}, depth={depth}")
    if arch == "mlp":  # 2-D inputs -> 1 output, ReLU
        layers: list[nn.Module] = [nn.Linear(2, width), nn.ReLU()]
        for _ in range(depth - 1):
            layers += [nn.Linear(width, width), nn.ReLU()]
        return nn.Sequential(*layers, nn.Linear(width, 1))
    if arch == "siren":  # coordinates (x, y) -> value
        layers = [nn.Linear(2, width), Sine(30.0)]
        for _ in range(depth - 1):
            layers += [nn.Linear(width, width), Sine(1.0)]
        return nn.Sequential(*layers, nn.Linear(width, 1))
    if arch == "cnn":  # 1-channel images -> 10 classes
        layers = [nn.Conv2d(1, width, 3, padding=1), nn.ReLU()]
        for _ in range(depth - 1):
            layers += [nn.Conv2d(width, width, 3, padding=1), nn.ReLU()]
        return nn.Sequential(*layers, GlobalAvgPool(), nn.Linear(width, 10))
    if arch == "resmlp":  # residual stream of `width` features
        blocks = [Residual(nn.Linear(width, width), nn.ReLU(), nn.Linear(width, width)) for _ in range(depth)]
        return nn.Sequential(nn.Linear(2, width), *blocks, nn.ReLU(), nn.Linear(width, 1))
    raise ValueError(f"unknown example architecture '{arch}' (choose from: {', '.join(EXAMPLE_ARCHS)})")


EXAMPLE_ARCHS = ("mlp", "cnn", "siren", "resmlp")


def versions() -> dict[str, str]:
    """Versions of wspace, Python and the main dependencies."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"wspace": __version__, "python": platform.python_version()}
    for dist in ("torch", "torch_geometric", "diffusers", "lightning", "hydra-core", "safetensors", "numpy"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = "not installed"
    return out


def main(cfg: Any) -> None:
    """``wspace info``: versions, or the spec of ``example_module(cfg.arch, cfg.width, cfg.depth)``."""
    if cfg.format not in ("text", "json"):
        print(f"wspace info: error: format must be 'text' or 'json', got '{cfg.format}'", file=sys.stderr)
        sys.exit(EXIT_USAGE)
    if cfg.arch is None:
        v = versions()
        if cfg.format == "json":
            print(json.dumps(v, indent=2))
        else:
            print("\n".join(f"{k:<16} {val}" for k, val in v.items()))
        return
    from wspace.spec import spec_from_module

    try:
        spec = spec_from_module(example_module(str(cfg.arch), int(cfg.width), int(cfg.depth)))
    except ValueError as e:
        print(f"wspace info: error: {e}", file=sys.stderr)
        sys.exit(EXIT_USAGE)
    if cfg.format == "json":
        print(spec.to_json(indent=2))
        return
    print(f"arch        {cfg.arch} (width={cfg.width}, depth={cfg.depth})")
    print(f"program     {spec.describe()}")
    print(f"params      {spec.num_params} in {len(spec.params)} tensors")
    print("groups      " + ", ".join(f"{g.id}:{g.size}{'+'.join([''] + list(g.symmetries))}" for g in spec.groups))
    print(f"fingerprint {spec.fingerprint}")
