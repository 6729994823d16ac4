import pytest
import torch

from nets import FAMILIES, make
from wspace import WeightSpace, WeightSpaceError


def _reference(mods, x):
    with torch.no_grad():
        return torch.stack([m(x) for m in mods])


def _close(a, b, rtol=1e-5):
    scale = b.abs().max().clamp_min(1.0)
    return (a - b).abs().max().item() <= rtol * scale.item()


@pytest.mark.parametrize("name", list(FAMILIES))
def test_vectorized_eval_matches_modules(name):
    mods, x = make(name, 5)
    ws = WeightSpace.from_modules(mods)
    with torch.no_grad():
        y = ws(x)
        assert y.shape[0] == 5
        assert _close(y, _reference(mods, x))
        # per-network inputs
        xb = torch.stack([x.roll(i, 0) for i in range(5)])
        yb = ws(xb)
        assert _close(yb, torch.stack([m(xb[i]) for i, m in enumerate(mods)]))


@pytest.mark.parametrize("name", list(FAMILIES))
def test_flat_and_state_dict_round_trips_are_exact(name):
    mods, _ = make(name, 3)
    ws = WeightSpace.from_modules(mods)
    flat = ws.flatten()
    assert flat.shape == (3, ws.spec.num_params)
    back = WeightSpace.from_flat(ws.spec, flat)
    assert all(torch.equal(a, b) for a, b in zip(ws.tensors, back.tensors))
    sds = ws.to_state_dicts()
    for sd, m in zip(sds, mods):
        assert sd.keys() == m.state_dict().keys()
        assert all(torch.equal(sd[k], v) for k, v in m.state_dict().items())
    again = WeightSpace.from_state_dicts(ws.spec, sds)
    assert all(torch.equal(a, b) for a, b in zip(ws.tensors, again.tensors))


def test_views_indexing_cat_and_to():
    mods, x = make("cnn2d", 4)
    ws = WeightSpace.from_modules(mods)
    assert len(ws.weights) == len(ws.spec.layers) == 3
    assert ws.weights[0].shape == (4, 8, 1, 3, 3) and ws.biases[2].shape == (4, 10)
    one = ws[2]
    assert len(one) == 1 and torch.equal(one.tensors[0][0], ws.tensors[0][2])
    assert len(ws[-1]) == 1 and torch.equal(ws[-1].tensors[0][0], ws.tensors[0][3])
    assert len(ws[1:3]) == 2
    cat = WeightSpace.cat([ws[:1], ws[1:]])
    assert all(torch.equal(a, b) for a, b in zip(cat.tensors, ws.tensors))
    d = ws.to(torch.float64)
    assert d.dtype == torch.float64 and _close(d(x.double()).float(), ws(x))
    with pytest.raises(IndexError):
        ws[4]
    mods2, _ = make("mlp", 1)
    with pytest.raises(WeightSpaceError, match="different architectures"):
        WeightSpace.cat([ws, WeightSpace.from_modules(mods2)])


def test_to_modules_round_trip():
    mods, x = make("res_cnn", 2)
    ws = WeightSpace.from_modules(mods)
    rebuilt = ws.to_modules()
    with torch.no_grad():
        assert _close(torch.stack([m(x) for m in rebuilt]), ws(x))


def test_bad_state_dicts_raise():
    mods, _ = make("mlp", 2)
    ws = WeightSpace.from_modules(mods)
    sd = mods[0].state_dict()
    missing = {k: v for k, v in sd.items() if k != "2.bias"}
    with pytest.raises(WeightSpaceError, match="2.bias"):
        WeightSpace.from_state_dicts(ws.spec, [missing])
    extra = dict(sd, foo=torch.zeros(1))
    with pytest.raises(WeightSpaceError, match="foo"):
        WeightSpace.from_state_dicts(ws.spec, [extra])
    wrong = dict(sd)
    wrong["2.weight"] = torch.zeros(32, 31)
    with pytest.raises(WeightSpaceError, match="2.weight"):
        WeightSpace.from_state_dicts(ws.spec, [wrong])
    with pytest.raises(WeightSpaceError):
        WeightSpace.from_flat(ws.spec, torch.zeros(2, ws.spec.num_params + 1))
    with pytest.raises(WeightSpaceError, match="features"):
        ws(torch.zeros(5, 3))


def test_init_matches_pytorch_default_scale():
    mods, _ = make("mlp", 1)
    ws = WeightSpace.init(WeightSpace.from_modules(mods).spec, 64, generator=torch.Generator().manual_seed(0))
    w = ws.tensors[2]  # 32x32 layer: U(-1/sqrt(32), 1/sqrt(32))
    bound = 32 ** -0.5
    assert w.abs().max() <= bound and w.abs().max() > 0.95 * bound
    assert abs(w.std().item() - bound / 3 ** 0.5) < 0.01
