import pytest
import torch
from torch import nn
from torch_geometric.data import Batch
from torch_geometric.loader import DataLoader

from nets import FAMILIES, make
from wspace import WeightSpace, WeightSpaceError
from wspace.graph import NeuralGraph, clear_cache, from_graph, graph_layout, to_graph
from wspace.modules import Residual
from wspace.symmetry import permute, random_permutation


def odd_kernels() -> nn.Module:
    """Non-square and mixed kernel sizes: exercises centering inside the (5, 5) padding."""
    return nn.Sequential(
        nn.Conv2d(2, 4, (3, 5), padding=(1, 2)), nn.ReLU(), nn.Conv2d(4, 3, (5, 3), padding=(2, 1)), nn.ReLU(),
        Residual(nn.Conv2d(3, 3, 1), nn.ReLU()), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 2),
    )


ALL = list(FAMILIES) + ["odd_kernels"]
# Residual identity edges per network, counted by hand from tests/nets.py.
RESIDUAL_EDGES = {"res_mlp": 16 + 16, "res_cnn": 8, "odd_kernels": 3}


def _ws(name: str, n: int = 3, seed: int = 0) -> WeightSpace:
    if name == "odd_kernels":
        torch.manual_seed(seed)
        mods = [odd_kernels() for _ in range(n)]
        with torch.no_grad():
            for m in mods:
                for p in m.parameters():
                    p.add_(0.1 * torch.randn(p.shape))
        return WeightSpace.from_modules(mods)
    return WeightSpace.from_modules(make(name, n, seed)[0])


def _equal_ws(a: WeightSpace, b: WeightSpace) -> bool:
    return a.spec == b.spec and all(torch.equal(x, y) for x, y in zip(a.tensors, b.tensors))


def _assert_batch_equal(a: Batch, b: Batch) -> None:
    assert type(a) is type(b)
    assert set(a.keys()) == set(b.keys())
    for k in a.keys():
        assert a[k].dtype == b[k].dtype, k
        assert torch.equal(a[k], b[k]), k
    assert a.num_graphs == b.num_graphs and a._num_graphs == b._num_graphs
    assert a._slice_dict.keys() == b._slice_dict.keys()
    for k in a._slice_dict:
        assert torch.equal(a._slice_dict[k], b._slice_dict[k]), k
        ia, ib = a._inc_dict[k], b._inc_dict[k]
        assert (ia is None and ib is None) or torch.equal(ia, ib), k


# ----------------------------------------------------------------- slow reference
def _residual_links(ops, count, out):
    for op in ops:
        if op.kind in ("linear", "conv"):
            count += 1
        elif op.kind == "residual":
            start = count
            count = _residual_links(op.children[0].children, count, out)
            out.append((start, count))
        elif op.kind == "sequential":
            count = _residual_links(op.children, count, out)
    return count


def _reference(ws: WeightSpace, kshape: tuple) -> Batch:
    """Per network, per neuron, per edge: the graph the docs describe, one Data at a time."""
    spec = ws.spec
    layers = spec.layers
    L = len(layers)
    sizes = [spec.in_features] + [l.out_features for l in layers]
    starts = [sum(sizes[:s]) for s in range(L + 2)]
    links = []
    _residual_links(spec.program, 0, links)
    datas = []
    for b in range(len(ws)):
        nodes = [(0.0, 0, 0, j, -1) for j in range(spec.in_features)]
        for l in layers:
            bias = ws.tensors[l.bias][b] if l.bias is not None else None
            last = l.index == L - 1
            for i in range(l.out_features):
                nodes.append((0.0 if bias is None else bias[i].item(), l.index + 1, 2 if last else 1,
                              i if last else -1, -1 if l.out_group is None else l.out_group))
        src, dst, attr, e_layer, e_type = [], [], [], [], []

        def padded(kernel):
            full = torch.zeros(kshape, dtype=ws.dtype)
            k = tuple(kernel.shape) if kernel.dim() else (1,) * len(kshape)
            sl = tuple(slice((p - q) // 2, (p - q) // 2 + q) for p, q in zip(kshape, k))
            full[sl] = kernel.reshape(k)
            return full.reshape(-1)

        for l in layers:
            w = ws.tensors[l.weight][b]
            for i in range(l.out_features):
                for j in range(l.in_features):
                    src.append(starts[l.index] + j)
                    dst.append(starts[l.index + 1] + i)
                    attr.append(padded(w[i, j]))
                    e_layer.append(l.index)
                    e_type.append(0)
        for a, c in links:
            for j in range(sizes[a]):
                src.append(starts[a] + j)
                dst.append(starts[c] + j)
                attr.append(padded(torch.tensor(1.0, dtype=ws.dtype)))
                e_layer.append(-1)
                e_type.append(1)
        cols = list(zip(*nodes))
        datas.append(NeuralGraph(
            x=torch.tensor(cols[0], dtype=ws.dtype).reshape(-1, 1),
            edge_index=torch.tensor([src, dst]),
            edge_attr=torch.stack(attr),
            node_layer=torch.tensor(cols[1]), node_type=torch.tensor(cols[2]), node_pos=torch.tensor(cols[3]),
            node_group=torch.tensor(cols[4]), edge_layer=torch.tensor(e_layer), edge_type=torch.tensor(e_type),
            kernel_shape=torch.tensor(kshape, dtype=torch.long).reshape(1, len(kshape)),
        ))
    return Batch.from_data_list(datas)


# -------------------------------------------------------------------------- tests
@pytest.mark.parametrize("name", ALL)
def test_round_trip_is_exact(name):
    ws = _ws(name)
    g = to_graph(ws)
    assert _equal_ws(from_graph(g, ws.spec), ws)
    ws64 = ws.to(torch.float64)
    assert _equal_ws(from_graph(to_graph(ws64), ws.spec), ws64)


@pytest.mark.parametrize("name", ALL)
def test_node_and_edge_counts(name):
    ws = _ws(name, n=2)
    spec = ws.spec
    neurons = spec.in_features + sum(l.out_features for l in spec.layers)
    edges = sum(l.out_features * l.in_features for l in spec.layers) + RESIDUAL_EDGES.get(name, 0)
    lay = graph_layout(spec)
    assert (lay.num_nodes, lay.num_edges) == (neurons, edges)
    g = to_graph(ws)
    assert g.num_nodes == 2 * neurons and g.num_edges == 2 * edges
    assert int((g.node_type == 0).sum()) == 2 * spec.in_features
    assert int((g.node_type == 2).sum()) == 2 * spec.out_features
    assert int((g.edge_type == 1).sum()) == 2 * RESIDUAL_EDGES.get(name, 0)


@pytest.mark.parametrize("name", ALL)
def test_matches_slow_reference(name):
    ws = _ws(name, n=2)
    g = to_graph(ws)
    _assert_batch_equal(g, _reference(ws, graph_layout(ws.spec).kernel_shape))


def test_kernels_are_centered():
    ws = _ws("odd_kernels", n=2)
    g = to_graph(ws)
    assert tuple(g.kernel_shape[0].tolist()) == (5, 5)
    lay = graph_layout(ws.spec)
    ea = g.edge_attr.reshape(2, lay.num_edges, 5, 5)
    s0, e0 = lay.edge_slices[0]  # (3, 5) kernel: rows 1..3 of the 5x5 square
    assert torch.equal(ea[:, s0:e0, 1:4, :], ws.tensors[0].reshape(2, -1, 3, 5))
    assert ea[:, s0:e0, [0, 4]].abs().sum() == 0
    s3, e3 = lay.edge_slices[3]  # linear head: a 1x1 kernel at the center
    assert torch.equal(ea[:, s3:e3, 2, 2], ws.weights[3].reshape(2, -1))
    res = g.edge_type.reshape(2, -1) == 1
    assert torch.equal(g.edge_attr.reshape(2, -1, 25)[res], torch.eye(25)[12].expand(6, 25))


@pytest.mark.parametrize("name", ALL)
def test_permuted_networks_give_isomorphic_graphs(name):
    ws = _ws(name, n=3)
    perm = random_permutation(ws.spec, 3, generator=torch.Generator().manual_seed(4))
    g, gp = to_graph(ws), to_graph(permute(ws, perm))
    assert not torch.equal(g.edge_attr, gp.edge_attr)
    lay = graph_layout(ws.spec)
    N, E = lay.num_nodes, lay.num_edges
    starts = torch.tensor([s for s, _ in lay.node_slices])[lay.node_layer]
    local = torch.arange(N) - starts
    for b in range(3):
        # new node i of group gid is old node perm[gid][b, i] of the same neuron set
        old_of_new = torch.arange(N)
        for gid, p in perm.items():
            m = lay.node_group == gid
            old_of_new[m] = starts[m] + p[b][local[m]]
        assert sorted(old_of_new.tolist()) == list(range(N))
        sl = slice(b * N, (b + 1) * N)
        assert torch.equal(gp.x[sl], g.x[sl][old_of_new])
        for key in ("node_layer", "node_type", "node_pos", "node_group"):
            assert torch.equal(gp[key][sl], g[key][sl][old_of_new])

        es = slice(b * E, (b + 1) * E)
        src, dst = g.edge_index[:, es] - b * N
        psrc, pdst = gp.edge_index[:, es] - b * N
        key = (src * N + dst) * 2 + g.edge_type[es]
        pkey = (old_of_new[psrc] * N + old_of_new[pdst]) * 2 + gp.edge_type[es]
        o, po = torch.argsort(key), torch.argsort(pkey)
        assert torch.equal(key[o], pkey[po])  # same edge multiset under the relabeling
        assert torch.equal(g.edge_attr[es][o], gp.edge_attr[es][po])
        assert torch.equal(g.edge_layer[es][o], gp.edge_layer[es][po])


@pytest.mark.parametrize("name", ["mlp", "cnn2d", "res_cnn"])
def test_data_list_indexing_and_loader(name):
    ws = _ws(name, n=5)
    g = to_graph(ws)
    datas = g.to_data_list()
    assert len(datas) == 5
    for i, d in enumerate(datas):
        single = to_graph(ws[i])
        for k in single.keys():
            if k not in ("batch", "ptr"):
                assert torch.equal(d[k], single[k]), k
        assert torch.equal(g[i].edge_attr, d.edge_attr) and torch.equal(g.get_example(i).x, d.x)
        assert _equal_ws(from_graph(d, ws.spec), ws[i])
    _assert_batch_equal(Batch.from_data_list(datas), g)
    clear_cache()  # the re-batched graphs below must not rely on to_graph's cached tensors
    loaded = [from_graph(b, ws.spec) for b in DataLoader(datas, batch_size=2, shuffle=False)]
    assert [len(w) for w in loaded] == [2, 2, 1]
    assert _equal_ws(WeightSpace.cat(loaded), ws)
    order = [3, 0, 4]
    assert _equal_ws(from_graph(Batch.from_data_list(g[order]), ws.spec), ws[order])
    assert _equal_ws(from_graph(Batch.from_data_list(g[1:4]), ws.spec), ws[1:4])


def test_mixed_specs_share_one_batch():
    mlp, cnn = _ws("mlp", n=2), _ws("res_cnn", n=3)
    g1, g2 = to_graph(mlp, max_kernel=(3, 3)), to_graph(cnn, max_kernel=3)
    assert g1.edge_attr.shape[1] == g2.edge_attr.shape[1] == 9
    # the MLP's scalar weights sit at the center of the 3x3 square
    assert torch.equal(g1.edge_attr[:, 4], to_graph(mlp).edge_attr[:, 0])
    assert g1.edge_attr[:, [0, 1, 2, 3, 5, 6, 7, 8]].abs().sum() == 0
    mixed = Batch.from_data_list(g1.to_data_list() + g2.to_data_list())
    assert mixed.num_graphs == 5
    assert _equal_ws(from_graph(Batch.from_data_list(mixed[:2]), mlp.spec), mlp)
    assert _equal_ws(from_graph(Batch.from_data_list(mixed[2:]), cnn.spec), cnn)
    with pytest.raises(WeightSpaceError):
        from_graph(mixed, cnn.spec)


def test_larger_max_kernel_round_trips():
    ws = _ws("cnn2d", n=2)
    g = to_graph(ws, max_kernel=(5, 5))
    assert g.edge_attr.shape[1] == 25
    assert _equal_ws(from_graph(g, ws.spec), ws)
    assert _equal_ws(from_graph(g, ws.spec, max_kernel=5), ws)
    with pytest.raises(WeightSpaceError):
        from_graph(g, ws.spec, max_kernel=3)  # disagrees with the stored kernel_shape


def test_gradients_flow_to_every_parameter():
    ws = _ws("res_cnn", n=2).requires_grad_()
    g = to_graph(ws)
    (g.edge_attr.sum() + 2 * g.x.sum()).backward()
    for p, t in zip(ws.spec.params, ws.tensors):
        assert torch.equal(t.grad, torch.full_like(t, 2.0 if p.role == "bias" else 1.0)), p.key


def test_mismatched_spec_raises():
    a = WeightSpace.from_module(nn.Sequential(nn.Linear(1, 4), nn.ReLU(), nn.Linear(4, 1)))
    b = WeightSpace.from_module(nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 2)))
    assert (graph_layout(a.spec).num_nodes, graph_layout(a.spec).num_edges) == (
        graph_layout(b.spec).num_nodes, graph_layout(b.spec).num_edges)  # same counts, other structure
    with pytest.raises(WeightSpaceError, match="node_layer"):
        from_graph(to_graph(a), b.spec)
    cnn = _ws("cnn2d", n=2)
    with pytest.raises(WeightSpaceError, match="nodes"):
        from_graph(to_graph(cnn), _ws("mlp").spec)
    with pytest.raises(WeightSpaceError):
        from_graph(to_graph(_ws("mlp")), cnn.spec)
    g = to_graph(cnn)
    g.edge_index = g.edge_index.flip(1)
    with pytest.raises(WeightSpaceError, match="edges"):
        from_graph(g, cnn.spec)
    with pytest.raises(WeightSpaceError, match="smaller"):
        to_graph(cnn, max_kernel=(1, 1))
    with pytest.raises(WeightSpaceError, match="ambiguous"):
        to_graph(a, max_kernel=3)
    with pytest.raises(WeightSpaceError, match="dims"):
        to_graph(cnn, max_kernel=(3,))


# ------------------------------------------------------------- the Data subclass
def test_graphs_are_neural_graph_data_with_their_own_batching_rules():
    ws = _ws("res_cnn", n=3)
    g = to_graph(ws)
    assert isinstance(g, Batch) and isinstance(g, NeuralGraph)
    datas = g.to_data_list()
    assert all(type(d) is NeuralGraph for d in datas)
    d = datas[0]
    lay = graph_layout(ws.spec)
    # edge indices are offset by the nodes before them; per-network index attributes are not
    assert d.__inc__("edge_index", d.edge_index) == lay.num_nodes
    for k in ("node_layer", "node_type", "node_pos", "node_group", "edge_layer", "edge_type", "kernel_shape"):
        assert d.__inc__(k, d[k]) == 0, k
        assert d.__cat_dim__(k, d[k]) == 0, k
    assert d.__cat_dim__("edge_index", d.edge_index) == -1
    batch = Batch.from_data_list(datas[::-1])
    E = lay.num_edges
    assert torch.equal(batch.edge_index[:, 2 * E:], d.edge_index + 2 * lay.num_nodes)  # d is the third graph now
    assert torch.equal(batch.edge_layer, lay.edge_layer.repeat(3))  # layer indices stay per network
    assert batch.kernel_shape.shape == (3, 2)


def test_mixed_architectures_batch_and_split_back_exactly():
    """Batch.from_data_list over graphs of several architectures (one kernel width),
    interleaved; from_graph per spec recovers every network exactly."""
    names = ["mlp", "cnn2d", "res_cnn", "res_mlp", "odd_kernels"]
    wss = {n: _ws(n, n=2, seed=i) for i, n in enumerate(names)}
    per = {n: to_graph(w, max_kernel=(5, 5)).to_data_list() for n, w in wss.items()}
    order = [(n, b) for b in range(2) for n in names]  # interleaved: mlp0, cnn0, ..., mlp1, cnn1, ...
    mixed = Batch.from_data_list([per[n][b] for n, b in order])
    assert mixed.num_graphs == len(order) and mixed.edge_attr.shape[1] == 25
    assert int(mixed.edge_index.max()) == mixed.num_nodes - 1
    for n, w in wss.items():
        idx = [i for i, (m, _) in enumerate(order) if m == n]
        back = from_graph(Batch.from_data_list(mixed[idx]), w.spec)
        assert _equal_ws(back, w), n
        for i, b in zip(idx, range(2)):
            assert _equal_ws(from_graph(mixed[i], w.spec), w[b]), (n, b)
