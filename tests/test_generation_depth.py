"""Generation beyond one hidden layer: the depth-general readout probe (equivariance, agreement
with nn.Module activations), the ridge readout step, the behaviour loss, unconditional D2NWG
on an INR zoo, a deep-MLP / CNN D2NWG with the probe, and the sampling errors."""
from __future__ import annotations

import pytest
import torch

from generators.d2nwg.components import auto_chunk
from generators.d2nwg.vae_stage import behaviour_loss
from generators.probe import ReadoutProbe, fit_readout, layer_responses, probe_spec_supported, readout_features
from generators.tokenizer import WeightTokenizer
from wspace.errors import WeightSpaceError
from wspace.families import family_spec
from wspace.functional import forward
from wspace.space import WeightSpace
from wspace.symmetry import permute, random_permutation

SPECS = {
    "mlp-1": lambda: family_spec("mlp", in_features=64, hidden=[16], num_classes=5),
    "mlp-3": lambda: family_spec("mlp", in_features=64, hidden=[16, 12, 8], num_classes=5),
    "cnn": lambda: family_spec("small_cnn", in_channels=1, channels=[4, 6], strides=[1, 1], num_classes=5),
}
INPUT = {"mlp-1": (64,), "mlp-3": (64,), "cnn": (1, 8, 8)}

TINY = dict(vae={"steps": 6, "batch_size": 8, "d_model": 32, "latent_dim": 8, "query_size": 32},
            condition={"hidden": 16},
            denoiser={"steps": 6, "batch_size": 8, "d_model": 32, "depth": 1, "warmup": 2},
            sampling={"num_inference_steps": 4}, checkpoint_every=3)


def _ws(arch: str, n: int = 3, seed: int = 0) -> WeightSpace:
    return WeightSpace.init(SPECS[arch](), n, generator=torch.Generator().manual_seed(seed))


def _tokenizer(ws: WeightSpace) -> WeightTokenizer:
    return WeightTokenizer(ws.spec, auto_chunk(ws.spec, True), neuron_centric=True).fit(ws)


def _shots(arch: str, B: int, K: int = 5, S: int = 4, seed: int = 1) -> torch.Tensor:
    return torch.rand(B, K, S, *INPUT[arch], generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("arch", sorted(SPECS))
def test_layer_responses_match_module_activations(arch):
    ws = _ws(arch, 2)
    x = torch.rand(2, 7, *INPUT[arch], generator=torch.Generator().manual_seed(3))
    responses, feats = layer_responses(ws, x)
    spec = ws.spec
    for b, net in enumerate(ws.to_modules()):
        acts = []
        hooks = [m.register_forward_hook(lambda _m, _i, o: acts.append(o)) for name, m in net.named_modules()
                 if name.startswith("act")]
        net.eval()
        with torch.no_grad():
            logits = net(x[b])
        for h in hooks:
            h.remove()
        for li, a in enumerate(acts):
            expect = a.flatten(2).mean(-1) if a.dim() > 2 else a
            assert torch.allclose(responses[li][b], expect, atol=1e-5)
        head = list(net.children())[-1]  # the linear output layer reads `feats`
        assert torch.allclose(head(feats[b]), logits, atol=1e-5)


@pytest.mark.parametrize("arch", sorted(SPECS))
def test_probe_features_equivariant_and_uncoupled_permutation_changes_them(arch):
    ws = _ws(arch, 2)
    tok = _tokenizer(ws)
    probe = ReadoutProbe(tok, lambda z: z)  # latents = tokens: probe the networks themselves
    shots = _shots(arch, 2)
    feats = probe(tok.tokenize(ws), shots)
    perm = random_permutation(ws.spec, 2, generator=torch.Generator().manual_seed(5))
    pws = permute(ws, perm)
    pfeats = probe(tok.tokenize(pws), shots)
    lay = tok.layout
    # token t of layer l (neuron j) of the permuted networks = token of neuron perm[j] of the originals
    for li, layer in enumerate(ws.spec.layers[:-1]):
        toks = torch.nonzero(lay.layer_index == li).flatten()
        neurons = lay.neuron_index[toks]
        for b in range(2):
            p = perm[layer.out_group][b]
            src = toks[torch.argsort(neurons)][p[neurons[torch.argsort(neurons)]]]
            assert torch.allclose(pfeats[b, toks[torch.argsort(neurons)]], feats[b, src], atol=1e-4)
    # the output-bias token (ridge bias) is invariant
    bias_tok = torch.nonzero(lay.layer_index == len(ws.spec.layers) - 1).flatten()
    assert torch.allclose(pfeats[:, bias_tok], feats[:, bias_tok], atol=1e-4)
    # an uncoupled permutation (one layer's rows only, not the next layer's columns) changes the features
    first = ws.spec.layers[0]
    g = torch.Generator().manual_seed(9)
    rows = torch.randperm(first.out_features, generator=g)
    broken = list(ws.tensors)
    broken[first.weight] = broken[first.weight][:, rows]
    broken[first.bias] = broken[first.bias][:, rows]
    bfeats = probe(tok.tokenize(WeightSpace(ws.spec, broken)), shots)
    assert not torch.allclose(bfeats, feats, atol=1e-3)
    if len(ws.spec.layers) > 2:  # deeper: the next layer's responses change, not only move
        second = torch.nonzero(lay.layer_index == 1).flatten()
        assert not torch.allclose(bfeats[:, second].sort(1).values, feats[:, second].sort(1).values, atol=1e-3)


def test_one_hidden_layer_features_unchanged():
    """The depth-general probe gives one-hidden-layer networks exactly the features of before."""
    ws = _ws("mlp-1", 2)
    tok = _tokenizer(ws)
    shots = _shots("mlp-1", 2)
    feats = ReadoutProbe(tok, lambda z: z)(tok.tokenize(ws), shots)
    direct, bias = readout_features(ws.tensors[0], ws.tensors[1], shots)
    lay = tok.layout
    hidden = torch.nonzero(lay.layer_index == 0).flatten()
    assert torch.allclose(feats[:, hidden], direct.clamp(-10, 10)[:, lay.neuron_index[hidden]], atol=1e-4)
    out_bias = torch.nonzero(lay.layer_index == 1).flatten()
    assert torch.allclose(feats[:, out_bias, :5], bias.clamp(-10, 10)[:, None], atol=1e-4)


@pytest.mark.parametrize("arch", sorted(SPECS))
def test_fit_readout_is_ridge_and_commutes_with_permutations(arch):
    ws = _ws(arch, 2)
    shots = _shots(arch, 2, S=6)
    fitted = fit_readout(ws, shots, ridge=0.5)
    # hidden layers untouched, output layer = the ridge solution on the penultimate features
    last = ws.spec.layers[-1]
    for i, (a, b) in enumerate(zip(ws.tensors, fitted.tensors)):
        if i not in (last.weight, last.bias):
            assert torch.equal(a, b)
    B, K, S = shots.shape[:3]
    x = shots.reshape(B, K * S, *shots.shape[3:])
    _, h = layer_responses(ws, x)
    h1 = torch.cat([h, torch.ones_like(h[..., :1])], -1).double()
    y = (2 * torch.eye(K).repeat_interleave(S, 0) - 1).double()
    sol = torch.linalg.solve(h1.transpose(1, 2) @ h1 + 0.5 * torch.eye(h1.shape[-1]).double(),
                             h1.transpose(1, 2) @ y)
    assert torch.allclose(fitted.tensors[last.weight].double(), sol[:, :-1].transpose(1, 2), atol=1e-4)
    # function-preserving: permuting the hidden neurons first gives the same function after the fit
    perm = random_permutation(ws.spec, 2, generator=torch.Generator().manual_seed(2))
    refit = fit_readout(permute(ws, perm), shots, ridge=0.5)
    q = torch.rand(11, *INPUT[arch], generator=torch.Generator().manual_seed(4))
    assert torch.allclose(forward(ws.spec, refit.tensors, q), forward(ws.spec, fitted.tensors, q), atol=1e-4)


def test_fit_readout_errors():
    ws = _ws("mlp-3", 2)
    with pytest.raises(WeightSpaceError, match="support sets for 2 networks"):
        fit_readout(ws, _shots("mlp-3", 3))
    with pytest.raises(WeightSpaceError, match="has 4 classes"):
        fit_readout(ws, _shots("mlp-3", 2, K=4))
    flat_cnn = family_spec("small_cnn", channels=[4], strides=[1], num_classes=5)
    assert probe_spec_supported(flat_cnn)


@pytest.mark.parametrize("arch", ["mlp-3", "cnn"])
def test_behaviour_loss(arch):
    ws = _ws(arch, 4)
    tok = WeightTokenizer(ws.spec, 32).fit(ws)
    tokens = tok.tokenize(ws)
    q = torch.rand(16, *INPUT[arch], generator=torch.Generator().manual_seed(0))
    assert float(behaviour_loss(tok, tokens, tokens, q)) < 1e-10
    rec = (tokens + 0.3 * torch.randn_like(tokens)).requires_grad_(True)
    loss = behaviour_loss(tok, rec, tokens, q)
    assert float(loss) > 1e-3
    loss.backward()
    assert rec.grad is not None and float(rec.grad.abs().sum()) > 0
    assert float((rec.grad * ~tok.mask).abs().max()) == 0.0  # padding gets no gradient


@pytest.fixture(scope="module")
def deep_runs(tmp_path_factory):
    """A tiny D2NWG run on a 2-hidden-layer MLP task zoo (probe active)."""
    from datasets_zoo.build import build_zoo
    from generators.d2nwg import train_d2nwg

    root = tmp_path_factory.mktemp("deep")
    mlp_zoo = build_zoo("digits-tasks", root / "mlp", size="small", progress=False,
                        overrides={"family_kwargs": {"hidden": [8, 6]}})
    return root, {"mlp": (mlp_zoo, train_d2nwg(mlp_zoo, root / "mlp-run", **TINY))}


def test_deep_mlp_d2nwg_uses_the_probe_and_samples(deep_runs):
    root, runs = deep_runs
    zoo, pipe = runs["mlp"]
    assert pipe.probe is not None and pipe.denoiser.probe_dim == 2 * 5 + 1
    ws = pipe.sample("digits:0-1-2-3-4", 3, generator=torch.Generator().manual_seed(0), readout="none")
    assert ws.spec.same_space(pipe.spec) and all(bool(torch.isfinite(t).all()) for t in ws.tensors)
    fitted = pipe.sample("digits:0-1-2-3-4", 3, generator=torch.Generator().manual_seed(0), readout="ridge")
    assert all(torch.equal(a, b) for a, b in list(zip(ws.tensors, fitted.tensors))[:-2])
    assert not torch.equal(ws.tensors[-2], fitted.tensors[-2])
    # the default ("auto") of a task-conditioned MLP pipeline is the ridge readout
    assert pipe.resolve_readout() == "ridge" and pipe.sampling_settings()["readout"] == "ridge"
    default = pipe.sample("digits:0-1-2-3-4", 3, generator=torch.Generator().manual_seed(0))
    assert all(torch.equal(a, b) for a, b in zip(default.tensors, fitted.tensors))
    other = family_spec("mlp", in_features=64, hidden=[8, 7], num_classes=5)
    with pytest.raises(WeightSpaceError, match=r"trained on .* cannot sample"):
        pipe.sample("digits:0-1-2-3-4", 2, spec=other)
    with pytest.raises(WeightSpaceError, match="has 3 classes"):
        pipe.sample("digits:0-1-2", 2)
    for bad, match in (({"num_inference_steps": 0}, "num_inference_steps"),
                       ({"guidance_scale": float("nan")}, "guidance_scale"),
                       ({"sampler": "euler"}, "unknown sampler"), ({"readout": "lasso"}, "readout")):
        with pytest.raises(WeightSpaceError, match=match):
            pipe.sample("digits:0-1-2-3-4", 2, **bad)


def test_cnn_d2nwg_with_probe(deep_runs):
    from datasets_zoo.build import build_zoo
    from generators.d2nwg import train_d2nwg

    root, _ = deep_runs
    zoo = build_zoo("digits-tasks-multi", root / "multi", size="small", progress=False)
    with pytest.raises(WeightSpaceError, match="generator.data.architecture"):
        train_d2nwg(zoo, root / "mixed-run", **TINY)
    pipe = train_d2nwg(zoo, root / "cnn-run", **{**TINY, "data": {"architecture": "cnn-8-16"}})
    assert pipe.probe is not None and pipe.input_shape == (1, 8, 8)
    ws = pipe.sample("digits:0-1-2-3-4@image", 2, generator=torch.Generator().manual_seed(0), readout="ridge")
    assert all(bool(torch.isfinite(t).all()) for t in ws.tensors)
    with pytest.raises(WeightSpaceError, match=r"shape \[64\].*\[1, 8, 8\].*@image"):  # the flat view of the task
        pipe.sample("digits:0-1-2-3-4", 2)


def test_unconditional_d2nwg_on_an_inr_zoo(tmp_path):
    from datasets_zoo.build import build_zoo
    from generators.d2nwg import D2NWG, train_d2nwg

    zoo = build_zoo("digits-inr", tmp_path / "inr", size="small", progress=False)
    pipe = train_d2nwg(zoo, tmp_path / "run", **TINY)
    assert not pipe.conditional and pipe.probe is None and "unconditional" in repr(pipe)
    a = pipe.sample(None, 3, generator=torch.Generator().manual_seed(0))
    assert a.spec.same_space(pipe.spec) and all(bool(torch.isfinite(t).all()) for t in a.tensors)
    with pytest.raises(WeightSpaceError, match="unconditional"):
        pipe.sample("digits:0-1-2-3-4", 2)
    with pytest.raises(WeightSpaceError, match="unconditional"):
        pipe.sample(None, 2, readout="ridge")
    assert pipe.resolve_readout() == "none"  # auto: nothing to fit without a task
    from datasets_zoo import Zoo
    from wspace.commands.sample import main as sample_main

    sample_main({"checkpoint": str(tmp_path / "run"), "task": None, "n": 2, "out": str(tmp_path / "s"), "seed": 0,
                 "device": "cpu"})  # `wspace sample` without task= for an unconditional generator
    drawn = Zoo.open(tmp_path / "s")
    assert len(drawn) == 2 and drawn.records[0]["metrics"] == {} and drawn.records[0].get("task") is None
    pipe.save_pretrained(tmp_path / "p")
    again = D2NWG.from_pretrained(tmp_path / "p")
    b = again.sample(None, 3, generator=torch.Generator().manual_seed(0))
    assert all(torch.equal(x, y) for x, y in zip(a.tensors, b.tensors))
    # a pipeline saved before latent_norm (one global `latent_scale` in model_index.json) still loads
    import json

    index = json.loads((tmp_path / "p" / "model_index.json").read_text())
    (tmp_path / "p" / "latent_norm.safetensors").unlink()
    with pytest.raises(WeightSpaceError, match="latent_scale"):
        D2NWG.from_pretrained(tmp_path / "p")
    index["latent_scale"] = 0.5
    (tmp_path / "p" / "model_index.json").write_text(json.dumps(index))
    old = D2NWG.from_pretrained(tmp_path / "p")
    assert torch.allclose(old.latent_norm.std, torch.full_like(old.latent_norm.std, 2.0))
    with pytest.raises(WeightSpaceError, match="condition.mode=task needs classification tasks"):
        train_d2nwg(zoo, tmp_path / "run2", **{**TINY, "condition": {"hidden": 16, "mode": "task"}})


def test_behaviour_loss_joins_after_behaviour_start(deep_runs, tmp_path):
    """behaviour_start=1: the behaviour loss never joins, the VAE equals a structure-only one;
    behaviour_start=0.5: it joins half-way and changes the VAE."""
    from generators.d2nwg import train_d2nwg

    root, runs = deep_runs
    zoo = runs["mlp"][0]
    quick = {**TINY, "denoiser": {**TINY["denoiser"], "steps": 1, "warmup": 0}}

    def vae(name, **over):
        pipe = train_d2nwg(zoo, tmp_path / name, **{**quick, "vae": {**TINY["vae"], **over}})
        return [p.detach().clone() for p in pipe.vae.parameters()]

    structure = vae("structure", behaviour_weight=0.0)
    never = vae("never", behaviour_weight=1.0, behaviour_start=1.0)
    half = vae("half", behaviour_weight=1.0, behaviour_start=0.5)
    assert all(torch.equal(a, b) for a, b in zip(structure, never))
    assert not all(torch.equal(a, b) for a, b in zip(structure, half))


def test_latent_norm_round_trip_roles_and_errors(tmp_path):
    from generators.d2nwg.latent_norm import LatentNorm

    g = torch.Generator().manual_seed(0)
    groups = torch.tensor([0, 0, 0, 1, 1, 2])
    mu = torch.randn(40, 6, 4, generator=g) * torch.tensor([1.0, 3.0, 0.1, 2.0]) + 5.0
    norm = LatentNorm.fit(mu, "role", groups)
    z = norm.normalize(mu)
    assert torch.allclose(norm.denormalize(z), mu, atol=1e-5)  # round trip
    for grp in range(3):  # every role's channels are standardized over its tokens
        x = z[:, groups == grp].reshape(-1, 4)
        assert torch.allclose(x.mean(0), torch.zeros(4), atol=1e-4)
        assert torch.allclose(x.std(0, unbiased=False), torch.ones(4), atol=1e-4)
    # permuting tokens within a role commutes with the map; across roles it does not
    perm = torch.tensor([2, 0, 1, 4, 3, 5])
    assert torch.allclose(norm.normalize(mu[:, perm]), z[:, perm], atol=1e-6)
    cross = torch.tensor([3, 1, 2, 0, 4, 5])
    assert not torch.allclose(norm.normalize(mu[:, cross]), z[:, cross], atol=1e-3)
    old = LatentNorm.fit(mu, "global")  # the single scale of older pipelines
    assert torch.allclose(old.normalize(mu), mu / mu.std(), atol=1e-5)
    norm.save(tmp_path)
    again = LatentNorm.load(tmp_path)
    assert torch.equal(again.mean, norm.mean) and torch.equal(again.std, norm.std)
    with pytest.raises(WeightSpaceError, match="latent_norm"):
        LatentNorm.fit(mu, "layer")
