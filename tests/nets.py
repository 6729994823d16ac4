"""Small example networks of every supported family, shared by the core tests."""
from __future__ import annotations

import torch
from torch import nn

from wspace.modules import GlobalAvgPool, Residual, Sine


def mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(2, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 1))


def mlp_nobias() -> nn.Module:
    return nn.Sequential(nn.Linear(3, 8, bias=False), nn.Tanh(), nn.Linear(8, 6, bias=False), nn.Tanh(), nn.Linear(6, 4, bias=False))


def cnn2d() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10),
    )


def cnn1d() -> nn.Module:
    return nn.Sequential(
        nn.Conv1d(1, 8, 5, padding=2), nn.Tanh(), nn.AvgPool1d(2), nn.Conv1d(8, 8, 3), nn.Tanh(), GlobalAvgPool(),
        nn.Linear(8, 10),
    )


def siren() -> nn.Module:
    return nn.Sequential(nn.Linear(2, 32), Sine(30.0), nn.Linear(32, 32), Sine(30.0), nn.Linear(32, 1))


def res_mlp() -> nn.Module:
    return nn.Sequential(
        nn.Linear(4, 16),
        Residual(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 16)),
        nn.ReLU(),
        Residual(nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 16)),
        nn.Linear(16, 3),
    )


def res_cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(),
        Residual(nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1)),
        nn.ReLU(), GlobalAvgPool(), nn.Linear(8, 5),
    )


FAMILIES = {
    "mlp": (mlp, (2,)),
    "mlp_nobias": (mlp_nobias, (3,)),
    "cnn2d": (cnn2d, (1, 8, 8)),
    "cnn1d": (cnn1d, (1, 40)),
    "siren": (siren, (2,)),
    "res_mlp": (res_mlp, (4,)),
    "res_cnn": (res_cnn, (1, 8, 8)),
}


def make(name: str, n: int = 4, seed: int = 0) -> tuple[list[nn.Module], torch.Tensor]:
    """``n`` independently initialized networks of family ``name`` and a batch of inputs."""
    ctor, in_shape = FAMILIES[name]
    g = torch.Generator().manual_seed(seed)
    mods = []
    for i in range(n):
        torch.manual_seed(seed * 1000 + i)
        m = ctor().eval()
        with torch.no_grad():  # non-zero biases so that bias handling is exercised
            for p in m.parameters():
                p.add_(0.1 * torch.randn(p.shape, generator=g))
        mods.append(m)
    x = torch.rand(16, *in_shape, generator=g) * 2 - 1
    return mods, x
