"""Zoo families: specs, rebuilding, vectorized evaluation, and init schemes."""
from __future__ import annotations

import json
import math

import pytest
import torch

from wspace.families import (
    INIT_SCHEMES,
    SIREN,
    ZOO_BIAS_VALUE,
    MLPClassifier,
    SmallCNN,
    build_family,
    family_spec,
    init_module_,
    init_weight_space,
)
from wspace import WeightSpace, WeightSpaceSpec, spec_from_module
from wspace.errors import WeightSpaceError

CASES = [
    (lambda: MLPClassifier(), (64,)),
    (lambda: MLPClassifier(64, [16, 16], 5, activation="tanh", dropout=0.5, bias=False), (64,)),
    (lambda: MLPClassifier(40, (), 10), (40,)),
    (lambda: MLPClassifier(activation="leakyrelu"), (64,)),
    (lambda: SmallCNN(), (1, 8, 8)),
    (lambda: SmallCNN(channels=(8, 16, 16), activation="gelu", dropout=0.2, strides=(2, 2, 2)), (1, 8, 8)),
    (lambda: SmallCNN(dims=1, channels=(8, 8, 8), activation="silu"), (1, 40)),
    (lambda: SIREN(), (2,)),
    (lambda: SIREN(2, (16, 16, 16), 3, w0=20.0, w0_initial=30.0), (2,)),
]


@pytest.mark.parametrize("case", range(len(CASES)))
def test_family_spec_rebuild_and_vectorized_forward(case):
    torch.manual_seed(case)
    make, in_shape = CASES[case]
    m = make().eval()
    spec = spec_from_module(m)
    assert spec.family == type(m).wspace_family
    assert json.loads(spec.family_kwargs) == m.wspace_config
    # rebuilt: same class, same kwargs, same spec; JSON round trip keeps the family
    m2 = spec.build_module()
    assert type(m2) is type(m) and m2.wspace_config == m.wspace_config
    assert spec_from_module(m2) == spec
    assert WeightSpaceSpec.from_json(spec.to_json()).build_module().wspace_config == m.wspace_config
    assert list(m2.state_dict()) == list(m.state_dict())
    # the vectorized evaluation computes exactly the module
    x = torch.rand(7, *in_shape) * 2 - 1
    with torch.no_grad():
        ref = m(x)
    out = WeightSpace.from_module(m)(x)
    assert out.shape == (1, *ref.shape)
    assert torch.allclose(out[0], ref, atol=1e-5, rtol=1e-5)


def test_known_parameter_counts_and_keys():
    assert family_spec("small_cnn").num_params == 4970  # Small CNN Zoo's CNN
    assert family_spec("siren").num_params == 1185  # DWSNets' INR SIREN 2-32-32-1
    assert family_spec("mlp").num_params == 64 * 32 + 32 + 32 * 10 + 10
    # dropout does not change parameter keys: a hyper-parameter grid shares them
    assert family_spec("mlp", dropout=0.5).keys == family_spec("mlp").keys
    assert family_spec("small_cnn", dropout=0.5).keys == family_spec("small_cnn").keys
    assert family_spec("mlp", hidden=(32,)) == family_spec("mlp", hidden=[32])
    assert type(build_family("siren", hidden=[8])) is SIREN


def test_bad_family_arguments_raise():
    with pytest.raises(WeightSpaceError):
        MLPClassifier(activation="swishy")
    with pytest.raises(WeightSpaceError):
        SmallCNN(channels=(8, 8), strides=(1, 2, 2))
    with pytest.raises(WeightSpaceError):
        MLPClassifier(dropout=1.5)
    with pytest.raises(WeightSpaceError):
        build_family("no_such_family")
    with pytest.raises(WeightSpaceError):
        init_weight_space("mlp", 2, scheme="orthogonal")
    with pytest.raises(WeightSpaceError):
        init_weight_space("mlp", 2, scheme="siren")  # no sine activations


# --------------------------------------------------------------------------- init schemes
def _big_mlp_spec() -> WeightSpaceSpec:
    return family_spec("mlp", in_features=256, hidden=[512], num_classes=128)


@pytest.mark.parametrize("scheme", [s for s in INIT_SCHEMES if s != "siren"])
def test_init_scheme_scales(scheme):
    spec = _big_mlp_spec()
    ws = init_weight_space(spec, 4, generator=torch.Generator().manual_seed(0), scheme=scheme)
    assert ws.batch_size == 4 and ws.dtype == torch.float32
    w0, w1 = ws.weights
    for w, fan_in, fan_out in ((w0, 256, 512), (w1, 512, 128)):
        expected_std = {
            "default": 1 / math.sqrt(fan_in) / math.sqrt(3),
            "kaiming_uniform": math.sqrt(2 / fan_in),
            "kaiming_normal": math.sqrt(2 / fan_in),
            "xavier_uniform": math.sqrt(2 / (fan_in + fan_out)),
            "xavier_normal": math.sqrt(2 / (fan_in + fan_out)),
            "uniform": 1 / math.sqrt(12),
            "normal": 1.0,
        }[scheme]
        expected_mean = 0.5 if scheme == "uniform" else 0.0
        assert abs(float(w.std()) / expected_std - 1) < 0.02, (scheme, float(w.std()), expected_std)
        assert abs(float(w.mean()) - expected_mean) < 0.02 * expected_std + 1e-3
        if scheme.endswith("uniform") or scheme == "default":
            lo = 0.0 if scheme == "uniform" else -math.sqrt(3) * expected_std
            hi = 1.0 if scheme == "uniform" else math.sqrt(3) * expected_std
            assert float(w.min()) >= lo and float(w.max()) <= hi
            assert float(w.max()) > hi - 0.01 * (hi - lo)  # the bound is actually reached
    for b in ws.biases:
        if scheme == "default":
            assert b.abs().max() <= 1 / math.sqrt(256) and b.std() > 0
        else:
            assert torch.all(b == ZOO_BIAS_VALUE)
    # networks differ from each other (independent draws per network)
    assert not torch.equal(w0[0], w0[1])


def test_init_uses_conv_fans_and_is_seeded():
    spec = family_spec("small_cnn", channels=[64, 64, 64])
    ws = init_weight_space(spec, 8, generator=torch.Generator().manual_seed(1), scheme="kaiming_normal")
    conv1 = ws.weights[1]  # [8, 64, 64, 3, 3]: fan_in = 64 * 9
    assert abs(float(conv1.std()) / math.sqrt(2 / (64 * 9)) - 1) < 0.02
    again = init_weight_space(spec, 8, generator=torch.Generator().manual_seed(1), scheme="kaiming_normal")
    assert all(torch.equal(a, b) for a, b in zip(ws.tensors, again.tensors))
    # a family name with kwargs is the same as its spec
    by_name = init_weight_space("small_cnn", 8, generator=torch.Generator().manual_seed(1), scheme="kaiming_normal",
                                channels=[64, 64, 64])
    assert by_name.spec == spec and all(torch.equal(a, b) for a, b in zip(ws.tensors, by_name.tensors))


def test_siren_init_bounds():
    spec = family_spec("siren", hidden=[256, 256], w0=30.0, w0_initial=10.0)
    ws = init_weight_space(spec, 16, generator=torch.Generator().manual_seed(0))  # scheme chosen: siren
    w_first, w_hidden, w_out = ws.weights
    bounds = (1 / 2, math.sqrt(6 / 256) / 30, math.sqrt(6 / 256) / 30)  # first layer: 1 / fan_in
    for w, bound in zip((w_first, w_hidden, w_out), bounds):
        assert float(w.abs().max()) <= bound
        assert float(w.abs().max()) > 0.99 * bound
        assert abs(float(w.std()) / (bound / math.sqrt(3)) - 1) < 0.05
    for b, fan_in in zip(ws.biases, (2, 256, 256)):  # biases: PyTorch default
        assert float(b.abs().max()) <= 1 / math.sqrt(fan_in)
    # the module's own constructor uses the same scheme
    m = SIREN(hidden=[256, 256], w0=30.0).requires_grad_(False)
    assert float(m.fc0.weight.abs().max()) <= 0.5 and float(m.fc1.weight.abs().max()) <= math.sqrt(6 / 256) / 30
    assert float(m.fc1.weight.abs().max()) > 0.9 * math.sqrt(6 / 256) / 30


def test_init_module_in_place():
    m = MLPClassifier(128, [256], 10).requires_grad_(False)
    init_module_(m, "normal", generator=torch.Generator().manual_seed(0))
    assert abs(float(m.fc0.weight.std()) - 1) < 0.02
    assert torch.all(m.fc0.bias == ZOO_BIAS_VALUE)


# --------------------------------------------------------------------------- one activation table
def test_one_activation_table_in_the_core():
    from torch import nn

    from wspace import families, modules
    from wspace.spec import spec_from_module

    assert all(families.ACTIVATIONS[k] is modules.ACTIVATIONS[k] for k in families.ACTIVATIONS)
    assert modules.activation_name("leakyrelu") == "leaky_relu" and modules.activation_name("swish") == "silu"
    assert isinstance(modules.activation_module("LeakyReLU"), nn.LeakyReLU)
    assert isinstance(modules.activation_module("linear"), nn.Identity)
    assert modules.activation_module("siren", 5.0).w0 == 5.0
    with pytest.raises(WeightSpaceError, match="unknown activation 'mish'"):
        modules.activation_module("mish")
    # every name of the table is one a spec records and rebuilds
    for name, cls in modules.ACTIVATIONS.items():
        spec = spec_from_module(nn.Sequential(nn.Linear(3, 4), modules.activation_module(name), nn.Linear(4, 2)))
        assert spec.describe().split(" | ")[1].startswith(name)
        assert type(spec.build_module()[1]) is cls
    # the families keep their subset and their aliases
    m = families.build_family("mlp", in_features=4, hidden=[3], num_classes=2, activation="swish")
    assert isinstance(m.act0, nn.SiLU)
    with pytest.raises(WeightSpaceError, match="choose one of"):
        families.build_family("mlp", in_features=4, hidden=[3], num_classes=2, activation="elu")
