"""Weight-space encoders (wspace.nn): equivariance, invariance, sensitivity, completeness, shapes, errors, learning."""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import pytest
import torch
from nets import FAMILIES, make
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from torch import nn

from wspace import Residual, WeightSpace, WeightSpaceError, spec_from_module
from wspace.nn import (
    DWSLayer, DWSNet, EquivariantDWSNet, EquivariantNFN, EquivariantUNF, FlatMLP, HNPLinear, InvariantPool,
    IOEmbedding, NFN, NPLinear, StatNN, UNF, UNFLinear, feature_layout, weight_statistics,
)
from wspace.nn.basis import CoreCache, compute_core, group_partitions
from wspace.symmetry import Permutation, permute, random_permutation

ALL = list(FAMILIES) + ["res_square"]
RESIDUAL = {"res_mlp", "res_cnn", "res_square"}
SMALL = dict(hidden=3, layers=2, head_hidden=8)
B = 3


pytestmark = pytest.mark.usefixtures("one_thread")


def _res_square() -> nn.Module:
    """A residual block with one square stream-to-stream weight: its axes carry one group twice."""
    return nn.Sequential(nn.Linear(3, 6), Residual(nn.Linear(6, 6)), nn.Tanh(), nn.Linear(6, 2))


@lru_cache(maxsize=None)
def _ws(family: str) -> WeightSpace:
    if family == "res_square":
        torch.manual_seed(1)
        return WeightSpace.from_modules([_res_square() for _ in range(B)]).to(torch.float64)
    mods, _ = make(family, B, seed=1)
    return WeightSpace.from_modules(mods).to(torch.float64)


def _inputs(family: str) -> torch.Tensor:
    if family == "res_square":
        return torch.rand(16, 3, generator=_gen(13), dtype=torch.float64) * 2 - 1
    return make(family, 1)[1].double()


def _float_ws(family: str, n: int) -> WeightSpace:
    """``n`` float32 networks of ``family``."""
    if family == "res_square":
        return WeightSpace.from_modules([_res_square() for _ in range(n)])
    return WeightSpace.from_modules(make(family, n)[0])


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _diff(a, b) -> float:
    """Max abs difference between two tensors, feature tuples or WeightSpaces."""
    if isinstance(a, WeightSpace):
        a, b = a.tensors, b.tensors
    if isinstance(a, torch.Tensor):
        return (a - b).abs().max().item()
    return max((x - y).abs().max().item() for x, y in zip(a, b))


def _scale(a) -> float:
    if isinstance(a, WeightSpace):
        a = a.tensors
    if isinstance(a, torch.Tensor):
        return a.abs().max().item()
    return max(x.abs().max().item() for x in a)


def _uncoupled(ws: WeightSpace, param: int, axis: int, perm: torch.Tensor) -> WeightSpace:
    """Permute one axis of one tensor only (breaks the coupling with its partners)."""
    t = ws.tensors[param]
    view = [B] + [1] * (t.dim() - 1)
    view[axis + 1] = perm.shape[1]
    ts = list(ws.tensors)
    ts[param] = t.gather(axis + 1, perm.reshape(view).expand_as(t))
    return WeightSpace(ws.spec, ts)


def _uncoupled_cases(spec) -> list[tuple[int, int, int]]:
    """(param, axis, group): rows of layer 1's weight; for residual nets also a stream tensor."""
    w = spec.layers[1].weight
    cases = [(w, 0, spec.params[w].axes[0])]
    for g in spec.groups:
        if g.stream:  # the last tensor writing into the stream
            p = max(i for i, p in enumerate(spec.params) if p.axes[0] == g.id)
            cases.append((p, 0, g.id))
    return cases


def _io_permuted(ws: WeightSpace, which: str) -> WeightSpace:
    """Permute the network's input units or output units (fixed axes), reversing them."""
    lay = feature_layout(ws.spec, "np")
    g = lay.io_groups[which]
    n = lay.group_sizes[g]
    assert n > 1
    perm = Permutation({g: torch.arange(n - 1, -1, -1).expand(B, n)})
    return lay.decode(lay.permute(lay.encode(ws), perm))


def _io_with_size(spec) -> str:
    lay = feature_layout(spec, "np")
    return "input" if lay.group_sizes[lay.io_groups["input"]] > 1 else "output"


# ------------------------------------------------------------------------- layouts
@pytest.mark.parametrize("mode", ["hnp", "np"])
@pytest.mark.parametrize("family", ALL)
def test_layout_roundtrip_and_permutation(family, mode):
    ws = _ws(family)
    lay = feature_layout(ws.spec, mode)
    feats = lay.encode(ws)
    for f, t in zip(feats, lay.tensors):
        assert f.shape == (B, t.factor, *t.sizes)
    assert _diff(lay.decode(feats), ws) == 0
    p = random_permutation(ws.spec, B, _gen())
    assert _diff(lay.encode(permute(ws, p)), lay.permute(feats, p)) == 0
    if family in ("cnn2d", "cnn1d"):  # conv kernels are folded into channels
        shape = ws.spec.params[ws.spec.layers[1].weight].shape
        w = lay.tensors[ws.spec.layers[1].weight]
        assert w.sizes == shape[:2] and w.factor == int(np.prod(shape[2:]))


@pytest.mark.parametrize("reduction", ["mean", "max"])
def test_layer_gradcheck_and_core_cache(reduction):
    """Exact gradients (float64 gradcheck) through every op kind: diagonals, pooling,
    diagonal embedding, in-place accumulation; and the shared-work core cache agrees with
    the direct computation."""
    ws = _ws("res_square")[:2]
    lay = feature_layout(ws.spec, "hnp")
    layer = UNFLinear(lay, 1, 2, reduction=reduction).double()
    x = tuple(f.clone().requires_grad_(True) for f in lay.encode(ws))
    assert torch.autograd.gradcheck(lambda *fs: layer(fs), x)
    cache = CoreCache(x, reduction)
    for _, cores, _, _ in layer._plan:
        for ck in cores:
            assert _diff(cache.get(ck), compute_core(x[ck.tensor], ck.blocks, ck.tied, reduction)) < 1e-12


def test_group_partitions():
    assert group_partitions((0, 1)) == (((0,), (1,)),)
    assert len(group_partitions((0, 0))) == 2
    assert len(group_partitions((0, 0, 0, 0))) == 15  # Bell(4)
    assert len(group_partitions((0, 1, 0, 1))) == 4


# -------------------------------------------------------------------------- layers
def _layer(kind: str, spec):
    torch.manual_seed(0)
    if kind == "unf":
        return UNFLinear(feature_layout(spec, "hnp"), 1, 3)
    if kind == "unf_max":
        return UNFLinear(feature_layout(spec, "hnp"), 1, 3, reduction="max")
    if kind == "hnp":
        return HNPLinear(spec, 1, 3)
    if kind == "np":
        return NPLinear(spec, 1, 3)
    if kind == "np_io":
        return NPLinear(spec, 1, 3, io_embed=True)
    if kind == "dws":
        return DWSLayer(feature_layout(spec, "hnp"), 1, 3)
    raise AssertionError(kind)


LAYERS = ["unf", "unf_max", "hnp", "np", "np_io", "dws"]


def _layer_cases():
    return [(k, f) for k in LAYERS for f in ALL if not (k == "dws" and f in RESIDUAL)]


@pytest.mark.parametrize("kind,family", _layer_cases())
def test_layer_equivariance_and_sensitivity(kind, family):
    ws = _ws(family)
    layer = _layer(kind, ws.spec).double()
    lay = layer.layout
    x = lay.encode(ws)
    y = layer(x)
    assert all(f.shape == (B, 3 * t.factor, *t.sizes) for f, t in zip(y, lay.tensors))
    # (a) coupled permutations: the NP layer (no embeddings) commutes with I/O permutations too
    if kind == "np":
        perm = lay.random_permutation(B, _gen(1))
        x_perm = lay.permute(x, perm)
    else:
        perm = random_permutation(ws.spec, B, _gen(1))
        x_perm = lay.encode(permute(ws, perm))
    err = _diff(layer(x_perm), lay.permute(y, perm))
    assert err < 1e-10 * max(1.0, _scale(y)), err
    # (c) an uncoupled permutation (one tensor's axis without its partners) changes the output
    for param, axis, g in _uncoupled_cases(ws.spec):
        p = random_permutation(ws.spec, B, _gen(2))[g]
        bad = layer(lay.encode(_uncoupled(ws, param, axis, p)))
        assert _diff(bad, lay.permute(y, Permutation({g: p}))) > 1e-4 * _scale(y), (param, axis)
    # permuting input/output units (fixed axes) changes the output of every layer ...
    y_io = layer(lay.encode(_io_permuted(ws, _io_with_size(ws.spec))))
    assert _diff(y_io, y) > 1e-4 * _scale(y)
    if kind == "np":  # ... and the NP layer without embeddings is equivariant to it (too symmetric by design)
        pio = lay.random_permutation(B, _gen(3))
        pio = Permutation({g: p for g, p in pio.items() if g in lay.io_groups.values()})
        assert _diff(layer(lay.permute(x, pio)), lay.permute(y, pio)) < 1e-10


@pytest.mark.parametrize("mode", ["hnp", "np"])
@pytest.mark.parametrize("family", ALL)
def test_invariant_pool(family, mode):
    ws = _ws(family)
    lay = feature_layout(ws.spec, mode)
    pool = InvariantPool(lay, 1)
    x = lay.encode(ws)
    z = pool(x)
    assert z.shape == (B, pool.out_features)
    perm = lay.random_permutation(B, _gen(4))
    assert _diff(pool(lay.permute(x, perm)), z) < 1e-12
    # a per-tensor pool cannot see an uncoupled permutation, except through the diagonal of a (g, g) weight
    param, axis, g = _uncoupled_cases(ws.spec)[0]
    moved = _diff(pool(lay.encode(_uncoupled(ws, param, axis, random_permutation(ws.spec, B, _gen(2))[g]))), z)
    square = ws.spec.params[param].axes[:2] == (g, g)
    assert (moved > 1e-6) if square else (moved < 1e-12)
    # ... but HNP pooling keeps the input/output units as channels
    z_io = pool(lay.encode(_io_permuted(ws, _io_with_size(ws.spec))))
    assert (_diff(z_io, z) > 1e-6) == (mode == "hnp")


@pytest.mark.parametrize("family", ["mlp", "cnn2d", "res_mlp"])
def test_io_embedding(family):
    ws = _ws(family)
    lay = feature_layout(ws.spec, "np")
    emb = IOEmbedding(lay, 1).double()
    x = lay.encode(ws)
    p = random_permutation(ws.spec, B, _gen(5))  # hidden permutations: equivariant
    assert _diff(emb(lay.permute(x, p)), lay.permute(emb(x), p)) == 0
    io = lay.random_permutation(B, _gen(6))
    io = Permutation({g: q for g, q in io.items() if g in lay.io_groups.values()})
    assert _diff(emb(lay.permute(x, io)), lay.permute(emb(x), io)) > 1e-3  # I/O permutations: broken on purpose
    with pytest.raises(WeightSpaceError, match="'np' feature layout"):
        IOEmbedding(feature_layout(ws.spec, "hnp"), 1)


def test_dws_layer_blocks():
    ws = _ws("mlp")
    layer = DWSLayer(feature_layout(ws.spec, "hnp"), 1, 2)
    assert set(layer.blocks) == {"weight_to_weight", "bias_to_weight", "weight_to_bias", "bias_to_bias"}
    roles = [t.role for t in layer.layout.tensors]
    for name, block in layer.blocks.items():
        src, dst = name.split("_to_")
        for okey, cores, _, _ in block._plan:
            assert roles[okey.tensor] == dst and all(roles[c.tensor] == src for c in cores)
    nobias = DWSLayer(feature_layout(_ws("mlp_nobias").spec, "hnp"), 1, 2)
    assert set(nobias.blocks) == {"weight_to_weight"}


# ------------------------------------------------------------------- completeness
def _orbits(lay, pairs: bool) -> int:
    """Orbits of the layout's group on feature entries (or on pairs of entries), by brute force."""
    feats, off = [], 0
    for c, t in zip(lay.channels(1), lay.tensors):
        n = c * int(np.prod(t.sizes, dtype=np.int64))
        feats.append(torch.arange(off, off + n).reshape(1, c, *t.sizes))
        off += n
    maps = []
    for g, n in lay.group_sizes.items():
        gens = [torch.roll(torch.arange(n), 1)] + ([torch.tensor([1, 0] + list(range(2, n)))] if n > 1 else [])
        for gen in gens:  # a transposition and an n-cycle generate S_n
            moved = lay.permute(tuple(feats), Permutation({g: gen[None]}))
            maps.append(torch.cat([f.flatten() for f in moved]).numpy())
    idx = np.arange(off)
    if pairs:
        src = [(idx[:, None] * off + idx[None, :]).ravel()] * len(maps)
        dst = [(m[:, None] * off + m[None, :]).ravel() for m in maps]
        n_nodes = off * off
    else:
        src, dst, n_nodes = [idx] * len(maps), maps, off
    r, c = np.concatenate(src), np.concatenate(dst)
    graph = coo_matrix((np.ones(len(r)), (r, c)), shape=(n_nodes, n_nodes))
    return connected_components(graph, directed=False)[0]


@pytest.mark.parametrize("mode", ["hnp", "np"])
@pytest.mark.parametrize(
    "net",
    [
        lambda: nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2)),
        lambda: nn.Sequential(nn.Linear(2, 4), Residual(nn.Linear(4, 4)), nn.ReLU(), nn.Linear(4, 2)),  # (g, g) weight
        lambda: nn.Sequential(nn.Linear(2, 4), Residual(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 4)), nn.Linear(4, 2, bias=False)),
        lambda: nn.Sequential(nn.Conv1d(2, 4, 2), nn.ReLU(), nn.Conv1d(4, 4, 2), nn.ReLU(), GlobalPool(), nn.Linear(4, 2)),
    ],
    ids=["mlp", "res1", "res2", "cnn1d"],
)
def test_basis_is_complete(net, mode):
    """dim(equivariant linear maps) = number of orbits on pairs of entries; the layer has one
    weight per basis element, one bias per invariant vector, and the pool one feature per
    invariant functional (group sizes 4 >= number of axes of a term, so the counts are exact)."""
    lay = feature_layout(spec_from_module(net()), mode)
    layer = UNFLinear(lay, 1, 1)
    assert sum(w.numel() for w in layer.weights) == _orbits(lay, pairs=True)
    assert sum(b.numel() for b in layer.biases) == _orbits(lay, pairs=False)
    assert InvariantPool(lay, 1).out_features == _orbits(lay, pairs=False)


def GlobalPool():
    from wspace import GlobalAvgPool

    return GlobalAvgPool()


# ------------------------------------------------------------------------ encoders
def _invariant(name: str, spec):
    torch.manual_seed(0)
    if name == "unf":
        return UNF(spec, 4, **SMALL)
    if name == "nfn_hnp":
        return NFN(spec, 4, mode="hnp", **SMALL)
    if name == "nfn_np":
        return NFN(spec, 4, mode="np", **SMALL)
    if name == "dwsnet":
        return DWSNet(spec, 4, **SMALL)
    if name == "statnn":
        return StatNN(spec, 4, hidden=8)
    raise AssertionError(name)


def _equivariant(name: str, spec, residual: bool = False):
    torch.manual_seed(0)
    kw = dict(hidden=3, layers=2, residual=residual)
    if name == "unf":
        return EquivariantUNF(spec, **kw)
    if name == "nfn_hnp":
        return EquivariantNFN(spec, mode="hnp", **kw)
    if name == "nfn_np":
        return EquivariantNFN(spec, mode="np", **kw)
    if name == "dwsnet":
        return EquivariantDWSNet(spec, **kw)
    raise AssertionError(name)


INVARIANT = ["unf", "nfn_hnp", "nfn_np", "dwsnet", "statnn"]
EQUIVARIANT = ["unf", "nfn_hnp", "nfn_np", "dwsnet"]


def _supported(name, family):
    return not (name == "dwsnet" and family in RESIDUAL)


@pytest.mark.parametrize("name,family", [(n, f) for n in INVARIANT for f in ALL if _supported(n, f)])
def test_invariant_encoder(name, family):
    ws = _ws(family)
    enc = _invariant(name, ws.spec).double()
    y = enc(ws)
    assert y.shape == (B, 4) and torch.isfinite(y).all()
    # (b) invariance under random neuron permutations (residual streams included)
    p = random_permutation(ws.spec, B, _gen(7))
    assert _diff(enc(permute(ws, p)), y) < 1e-10
    # the permuted networks compute the same function: the symmetry is the right one
    x = _inputs(family)
    assert _diff(permute(ws, p)(x), ws(x)) < 1e-9
    if name == "statnn":
        return
    # (c) sensitivity: uncoupled permutations and I/O permutations change the output
    for param, axis, g in _uncoupled_cases(ws.spec):
        q = random_permutation(ws.spec, B, _gen(8))[g]
        assert _diff(enc(_uncoupled(ws, param, axis, q)), y) > 1e-6, (param, axis)
    io_changes = _diff(enc(_io_permuted(ws, _io_with_size(ws.spec))), y) > 1e-6
    assert io_changes  # NP mode too: its I/O embeddings break the input/output symmetry


def test_np_without_io_embedding_ignores_io_order():
    ws = _ws("mlp")
    enc = NFN(ws.spec, 4, mode="np", io_embed=False, **SMALL).double()
    assert _diff(enc(_io_permuted(ws, "input")), enc(ws)) < 1e-10


@pytest.mark.parametrize("residual", [False, True])
@pytest.mark.parametrize("name,family", [(n, f) for n in EQUIVARIANT for f in ALL if _supported(n, f)])
def test_equivariant_encoder(name, family, residual):
    ws = _ws(family)
    enc = _equivariant(name, ws.spec, residual).double()
    out = enc(ws)
    assert isinstance(out, WeightSpace) and out.spec == ws.spec
    # (a) equivariance: f(permute(ws)) == permute(f(ws))
    p = random_permutation(ws.spec, B, _gen(9))
    assert _diff(enc(permute(ws, p)), permute(out, p)) < 1e-10
    if residual:  # ws + gamma * f(ws), gamma = 0.01 at init
        assert _diff(out, ws) < 0.05 * _scale(ws) and _diff(out, ws) > 0
        return
    param, axis, g = _uncoupled_cases(ws.spec)[0]
    q = random_permutation(ws.spec, B, _gen(10))[g]
    assert _diff(enc(_uncoupled(ws, param, axis, q)), permute(out, Permutation({g: q}))) > 1e-6


ENCODER_CTORS = {
    "UNF": UNF, "NFN-hnp": NFN, "NFN-np": lambda s, k: NFN(s, k, mode="np"), "DWSNet": DWSNet,
    "StatNN": StatNN, "FlatMLP": FlatMLP,
}


@pytest.mark.parametrize("name", list(ENCODER_CTORS))
def test_defaults_shapes_and_gradients(name):
    """(d) Default constructor on every family it supports, float32, grads reach every parameter."""
    for family in ALL:
        ws = _float_ws(family, 2)
        if name == "DWSNet" and family in RESIDUAL:
            with pytest.raises(WeightSpaceError, match="residual stream"):
                DWSNet(ws.spec, 3)
            with pytest.raises(WeightSpaceError, match="use UNF or NFN"):
                EquivariantDWSNet(ws.spec)
            continue
        torch.manual_seed(0)
        enc = ENCODER_CTORS[name](ws.spec, 3)
        ws_in = ws.clone().requires_grad_(True)
        y = enc(ws_in)
        assert y.shape == (2, 3) and y.dtype == torch.float32
        y.square().sum().backward()
        for pname, prm in enc.named_parameters():
            assert prm.grad is not None and torch.isfinite(prm.grad).all(), (family, pname)
        assert all(t.grad is not None for t in ws_in.tensors)
        assert enc(ws[0]).shape == (1, 3)  # a single network


@pytest.mark.parametrize("family", ["mlp", "cnn2d", "res_mlp", "res_square"])
def test_equivariant_defaults_and_gradients(family):
    ws = _float_ws(family, 2)
    for ctor in (EquivariantUNF, EquivariantNFN, lambda s: EquivariantNFN(s, mode="np"), EquivariantDWSNet):
        if ctor is EquivariantDWSNet and family in RESIDUAL:
            continue
        enc = ctor(ws.spec)
        out = enc(ws)
        assert all(a.shape == b.shape for a, b in zip(out.tensors, ws.tensors))
        sum(t.square().sum() for t in out.tensors).backward()
        assert all(p.grad is not None for p in enc.parameters())


def test_errors_and_limits():
    ws = _ws("mlp")
    for bad in (
        lambda: UNF(ws.spec, 0), lambda: UNF(ws.spec, 2, hidden=0), lambda: NFN(ws.spec, 2, mode="xnp"),
        lambda: UNF(ws.spec, 2, reduction="median"), lambda: UNF(ws.spec, 2, activation="swishy"),
        lambda: StatNN(ws.spec, 2, quantiles=(0.5, 2.0)), lambda: FlatMLP(ws.spec, -1),
    ):
        with pytest.raises(WeightSpaceError):
            bad()
    for enc in (UNF(ws.spec, 2, **SMALL), StatNN(ws.spec, 2), FlatMLP(ws.spec, 2), EquivariantNFN(ws.spec, hidden=2)):
        with pytest.raises(WeightSpaceError, match="built for"):
            enc(_ws("res_mlp").to(torch.float32))
        with pytest.raises(WeightSpaceError, match="expected a WeightSpace"):
            enc(torch.zeros(2, 3))
    layer = UNFLinear(feature_layout(ws.spec, "hnp"), 2, 2)
    with pytest.raises(WeightSpaceError, match="feature"):
        layer(feature_layout(ws.spec, "hnp").encode(ws))  # 1 channel given, 2 expected
    with pytest.raises(WeightSpaceError, match="1-channel"):
        feature_layout(ws.spec, "hnp").decode(layer(tuple(torch.cat([f, f], 1) for f in feature_layout(ws.spec, "hnp").encode(ws.to(torch.float32)))))
    # HNP folds the 784 network inputs into channels: refuse, and point to NP mode
    wide = spec_from_module(nn.Sequential(nn.Linear(784, 16), nn.ReLU(), nn.Linear(16, 10)))
    with pytest.raises(WeightSpaceError, match="mode='np'"):
        UNF(wide, 10)
    np_enc = NFN(wide, 10, mode="np", hidden=8)
    assert sum(p.numel() for p in np_enc.parameters()) < 200_000


# ----------------------------------------------------------------------- baselines
def test_statnn_features_and_flat_mlp():
    ws = _ws("cnn2d")
    stats = weight_statistics(ws)
    assert stats.shape == (B, 7 * len(ws.spec.params))
    t = ws.tensors[2][1].flatten().numpy()  # network 1, second conv weight
    ref = [t.mean(), t.var(), *np.quantile(t, [0, 0.25, 0.5, 0.75, 1.0])]
    assert np.allclose(stats[1, 14:21].numpy(), ref)
    assert torch.isfinite(weight_statistics(_ws("siren"))).all()  # single-entry bias: variance 0, not NaN
    flat = FlatMLP(ws.spec, 2).double()
    p = random_permutation(ws.spec, B, _gen(11))
    assert _diff(flat(permute(ws, p)), flat(ws)) > 1e-6  # the baseline is not invariant


# ------------------------------------------------------------------------ learning
def test_unf_learns_a_weight_statistic():
    """(e) UNF regresses the scale s of networks s * w (w random) in 100 Adam steps."""
    torch.manual_seed(0)
    spec = spec_from_module(nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 1)))
    g = _gen(12)
    base = WeightSpace.init(spec, 64, generator=g)
    s = 0.5 + 1.5 * torch.rand(64, generator=g)
    ws = base * s
    enc = UNF(spec, 1, hidden=8, layers=2, head_hidden=32)
    opt = torch.optim.Adam(enc.parameters(), lr=3e-3)
    losses = []
    for _ in range(100):
        loss = (enc(ws).squeeze(1) - s).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.05 * losses[0], (losses[0], losses[-1])
    # and it beats the best constant predictor (MSE = Var(s)) by far: it reads the weights
    assert losses[-1] < 0.25 * s.var(correction=0).item(), (losses[-1], s.var().item())


@pytest.mark.parametrize("family", ["mlp", "cnn2d", "mlp_nobias"])
def test_dws_layer_fused_forward_equals_the_sum_of_its_blocks(family):
    """DWSLayer fuses blocks writing the same output pattern into one matmul: same map."""
    torch.manual_seed(0)
    ws = _ws(family)
    lay = feature_layout(ws.spec, "hnp")
    for reduction in ("max", "mean"):
        layer = DWSLayer(lay, 2, 3, reduction=reduction).double()
        for block in layer.blocks.values():  # non-zero constants too
            for b in block.biases:
                torch.nn.init.normal_(b)
        x = tuple(torch.randn(4, c, *t.sizes, dtype=torch.float64) for c, t in zip(lay.channels(2), lay.tensors))
        fused = layer(x)
        summed = [None] * len(x)
        for block in layer.blocks.values():
            for j, y in enumerate(block.forward_partial(x)):
                if y is not None:
                    summed[j] = y if summed[j] is None else summed[j] + y
        for f, s in zip(fused, summed):
            assert torch.allclose(f, s, atol=1e-12)
