import json

import pytest
import torch
from torch import nn

from nets import FAMILIES, make
from wspace import Residual, WeightSpaceError, WeightSpaceSpec, spec_from_module


@pytest.mark.parametrize("name", list(FAMILIES))
def test_spec_json_round_trip_and_hash(name):
    mods, _ = make(name, 1)
    spec = spec_from_module(mods[0])
    again = WeightSpaceSpec.from_json(spec.to_json())
    assert again == spec and hash(again) == hash(spec)
    assert again.fingerprint == spec.fingerprint
    # a second derivation of an identical architecture is equal too
    assert spec_from_module(make(name, 1, seed=3)[0][0]) == spec


@pytest.mark.parametrize("name", list(FAMILIES))
def test_build_module_has_same_keys_and_function(name):
    mods, x = make(name, 1)
    spec = spec_from_module(mods[0])
    rebuilt = spec.build_module().eval()
    rebuilt.load_state_dict(mods[0].state_dict())
    assert torch.allclose(rebuilt(x), mods[0](x))
    assert spec.keys == tuple(mods[0].state_dict().keys())


def test_mlp_groups_and_axes():
    spec = spec_from_module(nn.Sequential(nn.Linear(2, 5), nn.ReLU(), nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3)))
    assert [g.size for g in spec.groups] == [5, 7]
    assert [g.symmetries for g in spec.groups] == [("scale",), ("sign",)]
    axes = {p.key: p.axes for p in spec.params}
    assert axes == {"0.weight": (0, None), "0.bias": (0,), "2.weight": (1, 0), "2.bias": (1,), "4.weight": (None, 1), "4.bias": (None,)}
    assert spec.in_features == 2 and spec.out_features == 3 and spec.input_dims == 0


def test_conv_kernel_axes_are_fixed():
    mods, _ = make("cnn2d", 1)
    spec = spec_from_module(mods[0])
    w0 = spec.params[0]
    assert w0.axes == (0, None, None, None)
    assert spec.params[2].axes == (1, 0, None, None)
    assert spec.params[4].axes == (None, 1)  # the head reads the pooled channels
    assert spec.input_dims == 2 and spec.in_features == 1
    assert spec.groups[0].symmetries == ("scale",)  # max pooling keeps positive scaling only


def test_residual_stream_shares_one_group():
    mods, _ = make("res_mlp", 1)
    spec = spec_from_module(mods[0])
    by_key = {p.key: p.axes for p in spec.params}
    stream = by_key["0.weight"][0]
    assert by_key["1.block.2.weight"][0] == stream
    assert by_key["1.block.0.weight"][1] == stream
    assert by_key["3.block.2.weight"][0] == stream
    assert by_key["4.weight"][1] == stream
    assert spec.groups[stream].stream
    assert by_key["1.block.0.weight"][0] != by_key["3.block.0.weight"][0]
    assert len(spec.groups) == 3


def test_sine_records_w0():
    spec = spec_from_module(nn.Sequential(nn.Linear(2, 4), __import__("wspace").Sine(12.5), nn.Linear(4, 1)))
    acts = [op for op in spec.walk() if op.kind == "act"]
    assert acts[0].attr("name") == "sine" and acts[0].attr("w0") == 12.5
    assert spec.groups[0].symmetries == ("sign",)


@pytest.mark.parametrize(
    "model, culprit",
    [
        (nn.Sequential(nn.Linear(4, 8), nn.LSTM(8, 8)), "'1' (LSTM)"),
        (nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 36, 10)), "'2' (Flatten)"),
        (nn.Sequential(nn.Conv2d(4, 4, 3, groups=2)), "'0' (Conv2d)"),
        (nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8)), "'1' (BatchNorm1d)"),
        (nn.Sequential(nn.Linear(4, 8), nn.Sequential(nn.ReLU(), nn.LayerNorm(8))), "'1.1' (LayerNorm)"),
        (nn.Sequential(nn.Linear(4, 8), Residual(nn.Linear(8, 6))), "'1' (Residual)"),
        (nn.Sequential(nn.Linear(4, 8), nn.Linear(9, 2)), "'1' (Linear)"),
    ],
)
def test_unsupported_modules_name_the_submodule(model, culprit):
    with pytest.raises(WeightSpaceError) as e:
        spec_from_module(model)
    assert culprit in str(e.value)


def test_non_sequential_module_is_rejected_clearly():
    class Custom(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = nn.LSTM(3, 3)

        def forward(self, x):
            return self.rnn(x)

    with pytest.raises(WeightSpaceError, match="Custom"):
        spec_from_module(Custom())


def test_malformed_json_raises_library_error():
    with pytest.raises(WeightSpaceError):
        WeightSpaceSpec.from_json("{not json")
    with pytest.raises(WeightSpaceError):
        WeightSpaceSpec.from_json(json.dumps({"params": []}))


def test_activation_change_is_a_different_space():
    a = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    c = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2))
    assert not spec_from_module(c).same_space(spec_from_module(a))


def test_same_space_ignores_dropout_rate():
    from wspace import WeightSpace

    a = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Dropout(0.0), nn.Linear(8, 2))
    b = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Dropout(0.5), nn.Linear(8, 2))
    sa, sb = spec_from_module(a), spec_from_module(b)
    assert sa != sb and sa.same_space(sb) and sa.fingerprint == sb.fingerprint
    ws = WeightSpace.cat([WeightSpace.from_module(a), WeightSpace.from_module(b, spec=sb)])
    assert len(ws) == 2


# Fingerprints and JSON bytes computed with the single-file wspace/spec.py, before it became
# the wspace/spec/ package: the split (and any later refactor) must leave them unchanged, or
# every saved zoo and checkpoint would stop matching its spec.
PINNED = {  # name: (fingerprint, sha256(to_json())[:16])
    "mlp": ("d44628f7b5245dfd", "2f7efd0577de1522"),
    "mlp_nobias": ("ad80b251d13e72f3", "153f7852f46a6569"),
    "cnn2d": ("0965a0b4cedb2623", "b95d942aeeabd672"),
    "cnn1d": ("a0ce44fcf208d0a9", "833b76588c930e77"),
    "siren": ("9ca472360d321fe3", "40200cd50c8aad14"),
    "res_mlp": ("b53f236939d28738", "f31fc77afa2e0e34"),
    "res_cnn": ("71b2efcf0f980658", "c5faac6908f51afa"),
}
PINNED_FAMILIES = {  # registered families: the family label and kwargs are in the JSON, not the fingerprint
    "mlp": ({}, "c81efaf3df4c9153", "1f5cea21893d6a07"),
    "small_cnn": ({}, "a6baab5c41d4c95e", "4cedf8cbcff03fb7"),
    "siren": ({}, "e4b9b5dc557236fb", "86e3b4a4ee2a13f8"),
    "small_cnn_1d": ({"dims": 1, "dropout": 0.1}, "45f8888fe1627cfb", "5fd4f0493ad71402"),
}


def _sha(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode()).hexdigest()[:16]


@pytest.mark.parametrize("name", list(PINNED))
def test_fingerprint_and_json_are_pinned(name):
    spec = spec_from_module(make(name, 1)[0][0])
    assert (spec.fingerprint, _sha(spec.to_json())) == PINNED[name]
    assert WeightSpaceSpec.from_json(spec.to_json()).to_json() == spec.to_json()


@pytest.mark.parametrize("name", list(PINNED_FAMILIES))
def test_family_fingerprint_and_json_are_pinned(name):
    from wspace.spec import get_family

    kwargs, fp, sha = PINNED_FAMILIES[name]
    spec = spec_from_module(get_family(name.replace("_1d", ""))(**kwargs))
    assert (spec.fingerprint, _sha(spec.to_json())) == (fp, sha)
    rebuilt = spec_from_module(spec.build_module())
    assert rebuilt.to_json() == spec.to_json()
