"""Git Re-Basin weight matching (wspace.align): recovery, monotonicity, function preservation."""
from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from wspace import GlobalAvgPool, Residual, WeightSpace, WeightSpaceError, spec_from_module
from wspace.align import align, aligned_distance, weight_matching, weight_matching_to_reference
from wspace.symmetry import Permutation, identity_permutation, inverse, permute, random_permutation


def _mlp(bias: bool = True) -> nn.Module:
    return nn.Sequential(
        nn.Linear(2, 16, bias=bias), nn.ReLU(), nn.Linear(16, 12, bias=bias), nn.Tanh(), nn.Linear(12, 3, bias=bias)
    )


def _cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 8, 3), nn.ReLU(), nn.Conv2d(8, 12, 3), nn.ReLU(), GlobalAvgPool(), nn.Linear(12, 4)
    )


def _res_mlp() -> nn.Module:
    # The second block is a single square stream->stream layer: its weight carries the
    # stream group on both axes.
    return nn.Sequential(
        nn.Linear(2, 10), nn.ReLU(),
        Residual(nn.Linear(10, 14), nn.ReLU(), nn.Linear(14, 10)),
        Residual(nn.Linear(10, 10)),
        nn.ReLU(), nn.Linear(10, 2),
    )


def _res_cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 6, 3, padding=1), nn.ReLU(),
        Residual(nn.Conv2d(6, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 6, 3, padding=1)),
        Residual(nn.Conv2d(6, 6, 1)),
        nn.ReLU(), GlobalAvgPool(), nn.Linear(6, 3),
    )


ARCHS = {"mlp": _mlp, "mlp_nobias": lambda: _mlp(bias=False), "cnn": _cnn, "res_mlp": _res_mlp, "res_cnn": _res_cnn}
INPUTS = {"mlp": (2,), "mlp_nobias": (2,), "cnn": (1, 7, 7), "res_mlp": (2,), "res_cnn": (1, 6, 6)}


def _space(name: str, batch: int, seed: int) -> WeightSpace:
    spec = spec_from_module(ARCHS[name]())
    return WeightSpace.init(spec, batch, generator=torch.Generator().manual_seed(seed))


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _raw_distance(a: WeightSpace, b: WeightSpace) -> torch.Tensor:
    return (a.flatten() - b.flatten()).norm(dim=1)


def _inner(a: WeightSpace, b: WeightSpace) -> torch.Tensor:
    return (a.flatten().double() * b.flatten().double()).sum(1)


@pytest.mark.parametrize("name", list(ARCHS))
def test_recovers_random_permutation_of_itself(name):
    ws_a = _space(name, 12, seed=1)
    q = random_permutation(ws_a.spec, len(ws_a), generator=_gen(2))
    ws_b = permute(ws_a, q)
    assert float(_raw_distance(ws_a, ws_b).min()) > 0.1  # the permutation really moved weights
    p, stats = weight_matching(ws_a, ws_b, generator=_gen(3), return_stats=True)
    assert p == inverse(q)
    assert torch.equal(aligned_distance(ws_a, ws_b, generator=_gen(3)), torch.zeros(len(ws_a)))
    assert bool(stats["converged"].all())
    assert torch.allclose(stats["objective"], _inner(ws_a, ws_a), rtol=1e-10)


def _train(ws: WeightSpace, steps: int = 40, seed: int = 0) -> WeightSpace:
    """A few dozen Adam steps of all B networks at once on a tiny synthetic regression task."""
    g = _gen(seed)
    x = torch.rand(64, ws.spec.in_features, generator=g) * 4 - 2
    y = torch.stack([torch.sin(x[:, 0]) + 0.5 * x[:, 1] ** 2, x[:, 0] * x[:, 1], torch.cos(x[:, 1])], 1)
    y = y[:, : ws.spec.out_features]
    params = [t.clone().requires_grad_(True) for t in ws.tensors]
    opt = torch.optim.Adam(params, lr=1e-2)
    first = None
    for _ in range(steps):
        loss = ((WeightSpace(ws.spec, params)(x) - y) ** 2).mean(dim=(1, 2)).sum()
        first = float(loss.detach()) if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss.detach()) < first  # training did something
    return WeightSpace(ws.spec, [p.detach() for p in params])


@pytest.mark.parametrize("name", list(ARCHS))
def test_independent_networks_distance_never_increases(name):
    ws_a, ws_b = _space(name, 16, seed=4), _space(name, 16, seed=5)
    if name == "mlp":
        ws_a, ws_b = _train(ws_a, seed=6), _train(ws_b, seed=6)
    raw = _raw_distance(ws_a, ws_b)
    aligned = aligned_distance(ws_a, ws_b, generator=_gen(7))
    assert bool((aligned <= raw * (1 + 1e-6)).all())
    assert float(aligned.mean()) < 0.97 * float(raw.mean())  # alignment does real work
    p, stats = weight_matching(ws_a, ws_b, generator=_gen(7), return_stats=True)
    assert bool((stats["objective"] >= _inner(ws_a, ws_b) - 1e-9).all())
    assert torch.allclose(stats["objective"], _inner(ws_a, permute(ws_b, p)), rtol=1e-6)
    assert bool(stats["converged"].all())


@pytest.mark.parametrize("name", list(ARCHS))
def test_aligned_network_computes_same_function(name):
    ws_a, ws_b = _space(name, 8, seed=8), _space(name, 8, seed=9)
    aligned = align(ws_b, ws_a, generator=_gen(10))
    assert not torch.equal(aligned.flatten(), ws_b.flatten())  # something was permuted
    x = torch.randn(5, *INPUTS[name], generator=_gen(11))
    y_b, y_al = ws_b(x), aligned(x)
    assert torch.allclose(y_al, y_b, rtol=1e-5, atol=1e-5 * float(y_b.abs().max()))


def test_single_hidden_layer_matches_brute_force():
    # One permutation group: coordinate descent solves it exactly, so it must equal the
    # best of all 5! permutations.
    spec = spec_from_module(nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 2)))
    ws_a, ws_b = WeightSpace.init(spec, 6, generator=_gen(12)), WeightSpace.init(spec, 6, generator=_gen(13))
    _, stats = weight_matching(ws_a, ws_b, return_stats=True)
    all_perms = torch.tensor(list(itertools.permutations(range(5))))  # [120, 5]
    best = torch.full((6,), -float("inf"), dtype=torch.float64)
    for perm in all_perms:  # brute force reference (test only)
        cand = permute(ws_b, Permutation({0: perm.expand(6, 5)}))
        best = torch.maximum(best, _inner(ws_a, cand))
    assert torch.allclose(stats["objective"], best, rtol=1e-10)


def test_broadcast_reference():
    ref = _space("res_mlp", 1, seed=14)
    q = random_permutation(ref.spec, 10, generator=_gen(15))
    ws_b = permute(WeightSpace.cat([ref] * 10), q)
    p = weight_matching(ref, ws_b, generator=_gen(16))
    assert p.batch_size == 10 and p == inverse(q)
    assert p == weight_matching_to_reference(ws_b, ref, generator=_gen(16))
    assert torch.equal(aligned_distance(ref, ws_b, generator=_gen(16)), torch.zeros(10))

    # Broadcasting equals matching against the explicitly repeated reference.
    others = _space("res_mlp", 10, seed=17)
    p1 = weight_matching(ref, others, generator=_gen(18))
    p2 = weight_matching(WeightSpace.cat([ref] * 10), others, generator=_gen(18))
    assert p1 == p2
    with pytest.raises(WeightSpaceError):
        weight_matching_to_reference(others, others[:2])


def test_max_iter_respected():
    ws_a = _space("mlp", 8, seed=19)
    ws_b = permute(ws_a, random_permutation(ws_a.spec, 8, generator=_gen(20)))
    p0, s0 = weight_matching(ws_a, ws_b, max_iter=0, return_stats=True)
    assert p0 == identity_permutation(ws_a.spec, 8)
    assert int(s0["sweeps"].max()) == 0 and not bool(s0["converged"].any())

    # the descent itself (from the identity: the forward start would find this copy at once)
    _, s1 = weight_matching(ws_a, ws_b, max_iter=1, generator=_gen(21), return_stats=True, forward_start=False)
    assert bool((s1["sweeps"] == 1).all())
    assert not bool(s1["converged"].any())  # the first sweep always improves on a permuted copy

    _, sf = weight_matching(ws_a, ws_b, max_iter=100, generator=_gen(21), return_stats=True, forward_start=False)
    assert bool((sf["sweeps"] >= 2).all()) and bool((sf["sweeps"] <= 100).all())
    assert bool((sf["objective"] >= s1["objective"] - 1e-9).all())

    # Starting from the answer: one sweep without improvement, then stop.
    q_inv = weight_matching(ws_a, ws_b, generator=_gen(21))
    pi, si = weight_matching(ws_a, ws_b, init=q_inv, return_stats=True)
    assert pi == q_inv and bool((si["sweeps"] == 1).all()) and bool(si["converged"].all())


def test_converged_pairs_do_not_block_others():
    # Half the pairs are identical (converge in one sweep), half are permuted copies.
    ws_a = _space("cnn", 8, seed=22)
    q = random_permutation(ws_a.spec, 8, generator=_gen(23))
    keep = torch.arange(8) < 4
    q = Permutation({g: torch.where(keep[:, None], torch.arange(p.shape[1]), p) for g, p in q.items()})
    ws_b = permute(ws_a, q)
    p, stats = weight_matching(ws_a, ws_b, generator=_gen(24), return_stats=True, forward_start=False)
    assert p == inverse(q)
    assert bool((stats["sweeps"][:4] == 1).all()) and bool((stats["sweeps"][4:] >= 2).all())


def test_forward_start_finds_exact_copies_the_descent_can_miss():
    """Small bias-free tanh nets: coordinate descent from the identity stalls on some permuted
    copies; starting from the better of the identity and the forward matching finds every one."""
    from nets import mlp_nobias
    from wspace import spec_from_module

    spec = spec_from_module(mlp_nobias())
    ws_a = WeightSpace.init(spec, 64, generator=_gen(31))
    ws_b = permute(ws_a, random_permutation(spec, 64, generator=_gen(32)))
    d = {}
    for fs in (False, True):
        p = weight_matching(ws_a, ws_b, generator=_gen(33), forward_start=fs)
        d[fs] = (permute(ws_b, p).flatten() - ws_a.flatten()).norm(dim=1)
    assert float(d[True].max()) < 1e-5
    assert bool((d[True] <= d[False] + 1e-6).all())


def test_errors():
    ws_a = _space("mlp", 4, seed=25)
    other = WeightSpace.init(spec_from_module(nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 3))), 4)
    with pytest.raises(WeightSpaceError, match="different architectures"):
        weight_matching(ws_a, other)
    with pytest.raises(WeightSpaceError):
        align(other, ws_a)
    with pytest.raises(WeightSpaceError, match="broadcast"):
        weight_matching(ws_a[:3], ws_a)
    with pytest.raises(WeightSpaceError, match="max_iter"):
        weight_matching(ws_a, ws_a, max_iter=-1)
    bad_init = Permutation({g.id: torch.arange(g.size).expand(2, g.size) for g in ws_a.spec.groups})
    with pytest.raises(WeightSpaceError, match="init"):
        weight_matching(ws_a, ws_a, init=bad_init)
