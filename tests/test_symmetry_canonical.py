"""Canonical forms under every non-permutation symmetry (sign flips, SIREN phase shifts,
positive rescaling): function kept (float64), idempotent, and two networks related by any
mix of symmetries reach the same canonical network up to a permutation, for every
family of tests/nets.py (MLPs, CNNs, SIREN, residual nets)."""
from __future__ import annotations

import pytest
import torch

from nets import FAMILIES
from wspace import WeightSpace, spec_from_module
from wspace.align import align
from wspace.functional import forward
from wspace.symmetry import canonicalize_symmetries, random_symmetry, shift_phases, sine_groups


def _population(name: str, n: int = 4, seed: int = 0) -> tuple[WeightSpace, torch.Tensor]:
    ctor, in_shape = FAMILIES[name]
    spec = spec_from_module(ctor())
    g = torch.Generator().manual_seed(seed)
    ws = WeightSpace.init(spec, n, generator=g).to(torch.float64)
    ws = WeightSpace(spec, [t + 0.1 * torch.randn(t.shape, generator=g, dtype=t.dtype) for t in ws.tensors])
    return ws, torch.randn(5, *in_shape, generator=g, dtype=torch.float64)


def transformed(ws: WeightSpace, seed: int) -> WeightSpace:
    """``ws`` under a random permutation, rescaling, sign flips and (SIREN) phase shifts."""
    g = torch.Generator().manual_seed(seed)
    out = random_symmetry(ws, generator=g)
    shifts = {gid: torch.randint(-2, 3, (len(ws), ws.spec.groups[gid].size), generator=g)
              for gid in sine_groups(ws.spec)}
    return shift_phases(out, shifts) if shifts else out


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_canonical_form_keeps_function_and_removes_the_symmetries(name):
    ws, x = _population(name)
    c = canonicalize_symmetries(ws)
    assert torch.allclose(forward(ws.spec, ws.tensors, x), forward(c.spec, c.tensors, x), atol=1e-9, rtol=0)
    assert torch.allclose(canonicalize_symmetries(c).flatten(), c.flatten(), atol=1e-12)  # idempotent
    t = transformed(ws, seed=5)
    assert torch.allclose(forward(t.spec, t.tensors, x), forward(ws.spec, ws.tensors, x), atol=1e-8, rtol=0)
    assert (t.flatten() - ws.flatten()).norm(dim=1).min() > 1e-2  # the transform really moved the weights
    ct = canonicalize_symmetries(t)
    assert (align(ct, c).flatten() - c.flatten()).norm(dim=1).max() < 1e-8
    # uncoupled: scaling a neuron's incoming weights without dividing its outgoing ones changes the
    # function, and the canonical form with it
    for gr in ws.spec.groups:
        if "scale" not in gr.symmetries:
            continue
        layer = next(l for l in ws.spec.layers if l.out_group == gr.id and (l.in_group is None or l.in_group < gr.id))
        tensors = list(ws.tensors)
        for i in (layer.weight, layer.bias):
            if i is not None:
                tensors[i] = tensors[i].clone()
                tensors[i][:, 0] *= 3.0
        broken = WeightSpace(ws.spec, tensors)
        assert not torch.allclose(forward(ws.spec, tensors, x), forward(ws.spec, ws.tensors, x), atol=1e-6)
        assert not torch.allclose(canonicalize_symmetries(broken).flatten(), c.flatten(), atol=1e-6)
