"""Neural-graph encoders (wspace.nn.graph_encoder): invariance, equivariance, sensitivity, mixed
architectures, gradients, PyG DataLoader over a zoo, the fast scatter reductions."""
from __future__ import annotations

from functools import lru_cache

import pytest
import torch
from nets import make
from torch import nn
from torch_geometric.data import Batch
from torch_geometric.utils import scatter

from wspace import WeightSpace, WeightSpaceError, spec_from_module
from wspace.graph import to_graph
from wspace.nn import EquivariantNeuralGraphEncoder, NeuralGraphConv, NeuralGraphEncoder
from wspace.nn.aggregation import FastAggregation, scatter_max, scatter_mean, scatter_sum
from wspace.symmetry import permute, random_permutation

FAMILIES = ["mlp", "cnn2d", "cnn1d", "siren", "res_mlp", "res_cnn", "mlp_nobias"]
SMALL = dict(hidden=8, layers=2, head_hidden=16)
B = 3


pytestmark = pytest.mark.usefixtures("one_thread")


@lru_cache(maxsize=None)
def _ws(family: str) -> WeightSpace:
    return WeightSpace.from_modules(make(family, B, seed=1)[0]).to(torch.float64)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _diff(a, b) -> float:
    if isinstance(a, WeightSpace):
        return max((x - y).abs().max().item() for x, y in zip(a.tensors, b.tensors))
    return (a - b).abs().max().item()


def _encoder(spec, **kw) -> NeuralGraphEncoder:
    torch.manual_seed(0)
    return NeuralGraphEncoder(spec, 5, **{**SMALL, **kw}).double().eval()


def _replace(ws: WeightSpace, param: int, tensor: torch.Tensor) -> WeightSpace:
    ts = list(ws.tensors)
    ts[param] = tensor
    return WeightSpace(ws.spec, ts)


def _uncoupled(ws: WeightSpace) -> WeightSpace:
    """Reverse the output neurons of layer 1's weight only (not its bias nor the next layer)."""
    w = ws.spec.layers[1].weight
    return _replace(ws, w, ws.tensors[w].flip(1))


def _io_reversed(ws: WeightSpace) -> WeightSpace:
    """Reverse the network's input units (or its output units when it has one input)."""
    spec = ws.spec
    if spec.layers[0].in_features > 1:
        w = spec.layers[0].weight
        return _replace(ws, w, ws.tensors[w].flip(2))
    last = spec.layers[-1]
    out = _replace(ws, last.weight, ws.tensors[last.weight].flip(1))
    return _replace(out, last.bias, out.tensors[last.bias].flip(1))


# ----------------------------------------------------------------------- invariance
@pytest.mark.parametrize("family", FAMILIES)
def test_invariance_and_sensitivity(family):
    ws = _ws(family)
    enc = _encoder(ws.spec)
    y = enc(ws)
    assert y.shape == (B, 5) and torch.isfinite(y).all()
    assert _diff(y[0], y[1]) > 1e-4  # different networks, different outputs
    p = random_permutation(ws.spec, B, _gen(1))
    wp = permute(ws, p)
    x = make(family, 1)[1].double()
    assert _diff(ws(x), wp(x)) < 1e-10  # the permutation is a symmetry of the networks ...
    assert _diff(wp.tensors[ws.spec.layers[0].weight], ws.tensors[ws.spec.layers[0].weight]) > 1e-3
    assert _diff(enc(wp), y) < 1e-10  # ... and the encoder does not see it
    assert _diff(enc(to_graph(wp)), y) < 1e-10  # same from the graph
    # not symmetries: an uncoupled permutation, reordered input / output units
    assert _diff(enc(_uncoupled(ws)), y) > 1e-6
    assert _diff(enc(_io_reversed(ws)), y) > 1e-6


@pytest.mark.parametrize("family", ["mlp", "res_cnn", "siren"])
@pytest.mark.parametrize("residual", [False, True])
def test_equivariance(family, residual):
    ws = _ws(family)
    torch.manual_seed(0)
    enc = EquivariantNeuralGraphEncoder(ws.spec, hidden=8, layers=2, residual=residual, residual_init=0.5).double()
    out = enc(ws)
    assert out.spec == ws.spec and all(a.shape == b.shape for a, b in zip(out.tensors, ws.tensors))
    assert all(torch.isfinite(t).all() for t in out.tensors)
    p = random_permutation(ws.spec, B, _gen(2))
    assert _diff(enc(permute(ws, p)), permute(out, p)) < 1e-10
    assert _diff(enc(to_graph(ws)), out) < 1e-12  # Batch input
    assert _diff(enc(_uncoupled(ws)), _uncoupled(out)) > 1e-6
    if residual:  # ws + gamma * f(ws)
        delta = EquivariantNeuralGraphEncoder(ws.spec, hidden=8, layers=2).double()
        delta.load_state_dict({k: v for k, v in enc.state_dict().items() if k != "gamma"})
        assert _diff(out, ws + delta(ws) * 0.5) < 1e-12


# --------------------------------------------------------------- mixed architectures
def test_mixed_architecture_batch():
    mlp, cnn, res = _ws("mlp"), _ws("cnn2d"), _ws("res_mlp")  # 2 -> 1, 1 -> 10 (3x3), 4 -> 3 (deeper)
    torch.manual_seed(0)
    enc = NeuralGraphEncoder(None, 5, max_inputs=4, max_outputs=10, max_kernel=(3, 3), max_layers=3, **SMALL)
    enc = enc.double().eval()
    graphs = [to_graph(w, max_kernel=(3, 3)) for w in (mlp, cnn, res)]
    separate = [enc(g) for g in graphs]
    datas = [g.to_data_list() for g in graphs]
    mixed = Batch.from_data_list([d for trio in zip(*datas) for d in trio])  # interleaved
    y = enc(mixed).reshape(B, 3, 5).transpose(0, 1)
    for k in range(3):
        assert _diff(y[k], separate[k]) < 1e-12
    # a WeightSpace and a narrower (unpadded) graph give the same: the encoder pads, centered
    assert _diff(enc(mlp), separate[0]) < 1e-12
    assert _diff(enc(to_graph(mlp)), separate[0]) < 1e-12
    # permutation invariance holds per network inside the mixed batch
    p = random_permutation(res.spec, B, _gen(3))
    mixed_p = Batch.from_data_list(datas[0] + datas[1] + to_graph(permute(res, p), max_kernel=(3, 3)).to_data_list())
    assert _diff(enc(mixed_p)[2 * B:], separate[2]) < 1e-10


def test_mixed_with_a_spec_and_errors():
    mlp, cnn = _ws("mlp"), _ws("cnn2d")
    enc = _encoder(cnn.spec, max_inputs=2)  # kernel (3, 3) and outputs 10 from the spec
    assert enc(mlp).shape == (B, 5) and enc(cnn).shape == (B, 5)
    with pytest.raises(WeightSpaceError, match="max_inputs"):
        enc(_ws("res_mlp"))  # 4 inputs
    with pytest.raises(WeightSpaceError, match="max_inputs"):
        enc(to_graph(_ws("res_mlp")))
    with pytest.raises(WeightSpaceError, match="kernel"):
        _encoder(mlp.spec, max_inputs=2, max_outputs=10)(cnn)  # 3x3 kernels into a K=1 encoder
    with pytest.raises(WeightSpaceError, match="kernel"):
        enc(to_graph(mlp, max_kernel=(5, 5)))
    with pytest.raises(WeightSpaceError, match="expected a WeightSpace"):
        enc(torch.zeros(3, 4))
    with pytest.raises(WeightSpaceError, match="max_inputs"):
        NeuralGraphEncoder(None, 5)
    with pytest.raises(WeightSpaceError, match="pool"):
        NeuralGraphEncoder(mlp.spec, 5, pool="median")
    with pytest.raises(WeightSpaceError, match="expected networks"):
        EquivariantNeuralGraphEncoder(mlp.spec)(cnn)
    # a single Data (one graph) works too
    assert _diff(enc(to_graph(mlp[1:2]).to_data_list()[0]), enc(mlp[1:2])) < 1e-12


# -------------------------------------------------------------------------- learning
def test_gradients_and_defaults():
    ws = WeightSpace.from_modules(make("res_cnn", 4)[0])
    enc = NeuralGraphEncoder(ws.spec, out_features=3)
    assert NeuralGraphEncoder.equivariant is EquivariantNeuralGraphEncoder
    ws_in = ws.map(lambda t: t.clone().requires_grad_(True))
    loss = enc(ws_in).square().sum()
    loss.backward()
    for name, p in enc.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name
    assert all(t.grad is not None and t.grad.abs().sum() > 0 for t in ws_in.tensors)
    eq = EquivariantNeuralGraphEncoder(ws.spec)
    out = eq(ws_in)
    sum(t.square().sum() for t in out.tensors).backward()
    assert all(p.grad is not None for p in eq.parameters())


def test_learns_a_weight_statistic():
    """The encoder regresses the scale s of networks s * w (w random) in 100 Adam steps."""
    torch.manual_seed(0)
    spec = spec_from_module(nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 1)))
    g = _gen(12)
    s = 0.5 + 1.5 * torch.rand(64, generator=g)
    graph = to_graph(WeightSpace.init(spec, 64, generator=g) * s)
    enc = NeuralGraphEncoder(spec, 1, hidden=8, edge_hidden=8, layers=2, head_hidden=32)
    opt = torch.optim.Adam(enc.parameters(), lr=3e-3)
    losses = []
    for _ in range(100):
        loss = (enc(graph).squeeze(1) - s).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.05 * losses[0], (losses[0], losses[-1])
    assert losses[-1] < 0.25 * s.var(correction=0).item(), (losses[-1], s.var().item())  # it reads the weights


@pytest.fixture(scope="module")
def inr_zoo(tmp_path_factory):
    from datasets_zoo import Zoo
    from datasets_zoo.build import build_zoo

    path = tmp_path_factory.mktemp("zoo") / "inr"
    build_zoo("digits-inr", path, size="small", progress=False)
    return Zoo.open(path)


def test_dataloader_over_a_zoo(inr_zoo):
    ds = inr_zoo.dataset("train", target="class", representation="graph")
    enc = NeuralGraphEncoder(ds.spec, out_features=10, hidden=8, layers=2)
    opt = torch.optim.SGD(enc.parameters(), 1e-2)
    n = 0
    for batch in ds.loader(batch_size=4, shuffle=True):
        logits = enc(batch)
        assert logits.shape == (batch.num_graphs, 10)
        loss = torch.nn.functional.cross_entropy(logits, batch.y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        n += batch.num_graphs
    assert n == len(ds)
    enc.eval()
    batch = next(iter(ds.loader(batch_size=4, shuffle=False)))
    assert _diff(enc(batch), enc(ds.weights([0, 1, 2, 3]))) < 1e-5


# ----------------------------------------------------------------------- layers
def test_conv_equivariance_and_fast_aggregation():
    g = to_graph(_ws("res_mlp"))
    torch.manual_seed(0)
    conv = NeuralGraphConv(4, 3, aggr=("mean", "max", "sum", "std")).double()  # std: a PyG aggregator
    x = torch.randn(g.num_nodes, 4, dtype=torch.float64)
    e = torch.randn(g.num_edges, 3, dtype=torch.float64)
    y, f = conv(x, g.edge_index, e)
    assert y.shape == x.shape and f.shape == e.shape
    # relabel the nodes at random: outputs follow
    perm = torch.randperm(g.num_nodes)
    inv = torch.empty_like(perm)
    inv[perm] = torch.arange(g.num_nodes)
    eperm = torch.randperm(g.num_edges)
    y2, f2 = conv(x[perm], inv[g.edge_index][:, eperm], e[eperm])
    assert _diff(y2, y[perm]) < 1e-12 and _diff(f2, f[eperm]) < 1e-12


@pytest.mark.parametrize("reduce,fn", [("sum", scatter_sum), ("mean", scatter_mean), ("max", scatter_max)])
def test_scatter_reductions_match_pyg(reduce, fn):
    g = _gen(4)
    src = torch.randn(40, 3, generator=g, dtype=torch.float64)
    index = torch.randint(0, 9, (40,), generator=g)  # dim_size 12: rows 9..11 (and maybe others) empty
    want = scatter(src, index, 0, dim_size=12, reduce=reduce)
    assert _diff(fn(src, index, 12), want) < 1e-12
    assert _diff(FastAggregation(reduce)(src, index, dim_size=12), want) < 1e-12
    assert torch.autograd.gradcheck(lambda s: fn(s, index, 12), src.clone().requires_grad_(True))
    # ties: the gradient of the max is split evenly, as in PyTorch
    tied = torch.tensor([[1.0], [1.0], [0.5]], dtype=torch.float64, requires_grad=True)
    scatter_max(tied, torch.tensor([0, 0, 0]), 1).sum().backward()
    assert tied.grad.flatten().tolist() == [0.5, 0.5, 0.0]
