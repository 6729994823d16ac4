import pytest
import torch

from nets import FAMILIES, make
from wspace import WeightSpace, WeightSpaceError
from wspace.symmetry import (
    Permutation, compose, identity_permutation, inverse, permute, random_permutation, random_scaling,
    random_sign_flip, random_symmetry, scale_neurons,
)


def _close(a, b, rtol=1e-5):
    return (a - b).abs().max().item() <= rtol * max(1.0, b.abs().max().item())


def _ws(name, n=4):
    mods, x = make(name, n)
    return WeightSpace.from_modules(mods).to(torch.float64), x.double()


@pytest.mark.parametrize("name", list(FAMILIES))
def test_random_permutation_preserves_function(name):
    ws, x = _ws(name)
    g = torch.Generator().manual_seed(1)
    perm = random_permutation(ws.spec, len(ws), generator=g)
    assert not bool(perm.is_identity().any())
    pw = permute(ws, perm)
    assert not torch.equal(pw.flatten(), ws.flatten())
    assert _close(pw(x), ws(x))


@pytest.mark.parametrize("name", list(FAMILIES))
def test_full_symmetry_preserves_function(name):
    ws, x = _ws(name)
    out = random_symmetry(ws, generator=torch.Generator().manual_seed(2))
    assert _close(out(x), ws(x))


@pytest.mark.parametrize("name", ["mlp", "cnn2d", "res_mlp", "res_cnn"])
def test_relu_scaling_preserves_function_and_changes_weights(name):
    ws, x = _ws(name)
    out = random_scaling(ws, generator=torch.Generator().manual_seed(3))
    assert (out.flatten() - ws.flatten()).abs().max() > 1e-2
    assert _close(out(x), ws(x))


@pytest.mark.parametrize("name", ["mlp_nobias", "siren", "cnn1d"])
def test_sign_flips_preserve_function(name):
    ws, x = _ws(name)
    out = random_sign_flip(ws, generator=torch.Generator().manual_seed(4))
    assert not torch.equal(out.flatten(), ws.flatten())
    assert _close(out(x), ws(x))


def test_disallowed_rescaling_is_refused():
    ws, _ = _ws("siren")  # sine neurons: sign flips only
    with pytest.raises(WeightSpaceError, match="rescaling"):
        scale_neurons(ws, {0: torch.full((len(ws), 32), 2.0, dtype=torch.float64)})
    ws, _ = _ws("mlp")  # relu neurons: no sign flips
    with pytest.raises(WeightSpaceError, match="sign"):
        scale_neurons(ws, {0: -torch.ones(len(ws), 32)})


@pytest.mark.parametrize("name", list(FAMILIES))
def test_uncoupled_permutation_changes_function(name):
    """Permuting a group on one axis only (not its partner) must change the output."""
    ws, x = _ws(name)
    perm = random_permutation(ws.spec, len(ws), generator=torch.Generator().manual_seed(5))
    g0 = 0
    tensors = list(ws.tensors)
    # permute only the producing side (out axis) of group 0 in its first tensor
    for i, p in enumerate(ws.spec.params):
        if p.axes and p.axes[0] == g0 and p.role == "weight":
            idx = perm[g0]
            t = tensors[i]
            view = [t.shape[0], t.shape[1]] + [1] * (t.dim() - 2)
            tensors[i] = t.gather(1, idx.reshape(view).expand_as(t))
            break
    broken = WeightSpace(ws.spec, tensors)
    assert not _close(broken(x), ws(x), rtol=1e-3)


@pytest.mark.parametrize("name", ["mlp", "res_mlp", "cnn2d"])
def test_scaling_without_compensation_changes_function(name):
    ws, x = _ws(name)
    g = ws.spec.groups[0]
    broken = scale_neurons(ws, {0: torch.full((len(ws), g.size), 2.0, dtype=torch.float64)})
    # remove the compensation on the consuming side by scaling only outputs: build by hand
    tensors = [t.clone() for t in ws.tensors]
    for i, p in enumerate(ws.spec.params):
        if p.axes[0] == 0:
            tensors[i] = tensors[i] * 2.0
    uncompensated = WeightSpace(ws.spec, tensors)
    assert _close(broken(x), ws(x))
    assert not _close(uncompensated(x), ws(x), rtol=1e-3)


def test_compose_and_inverse():
    ws, x = _ws("res_cnn")
    g = torch.Generator().manual_seed(6)
    p = random_permutation(ws.spec, len(ws), generator=g)
    q = random_permutation(ws.spec, len(ws), generator=g)
    two_steps = permute(permute(ws, p), q)
    one_step = permute(ws, compose(p, q))
    assert torch.equal(two_steps.flatten(), one_step.flatten())
    back = permute(permute(ws, p), inverse(p))
    assert torch.equal(back.flatten(), ws.flatten())
    assert compose(p, inverse(p)) == identity_permutation(ws.spec, len(ws))


def test_permutation_shape_is_checked():
    ws, _ = _ws("mlp")
    with pytest.raises(WeightSpaceError, match="group 0"):
        permute(ws, Permutation({0: torch.arange(31).expand(len(ws), 31)}))
