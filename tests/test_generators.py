"""Generators: tokenizer round trips and stats, VAE masking, D2NWG save/load, tiny end-to-end run."""
from __future__ import annotations

import pytest
import torch

from wspace.families import family_spec
from generators.autoencoders import TokenVAE, masked_mse
from generators.tokenizer import WeightTokenizer, canonicalize
from wspace.errors import WeightSpaceError
from wspace.space import WeightSpace

SPECS = {
    "mlp": lambda: family_spec("mlp", hidden=[32], num_classes=5),
    "cnn": lambda: family_spec("small_cnn"),
    "siren": lambda: family_spec("siren"),
}

TINY = dict(vae={"steps": 6, "batch_size": 8, "d_model": 32, "latent_dim": 8},
            condition={"hidden": 16, "contrastive_steps": 2},
            denoiser={"steps": 6, "batch_size": 8, "d_model": 32, "depth": 1, "warmup": 2},
            sampling={"num_inference_steps": 4}, checkpoint_every=3)


@pytest.mark.parametrize("arch", sorted(SPECS))
@pytest.mark.parametrize("per_neuron", [True, False])
def test_tokenizer_round_trip_exact(arch, per_neuron):
    spec = SPECS[arch]()
    ws = WeightSpace.init(spec, 3, generator=torch.Generator().manual_seed(0))
    ws = ws.map(lambda t: t * 3.0 + 0.25)  # non-trivial stats
    tok = WeightTokenizer(spec, chunk_size=48, per_neuron=per_neuron).fit(ws)
    raw = tok.detokenize(tok.tokenize(ws, normalize=False), normalize=False)
    assert all(torch.equal(a, b) for a, b in zip(ws.tensors, raw.tensors))
    t64 = tok.tokenize(ws, dtype=torch.float64)
    back = tok.detokenize(t64)
    assert all(torch.equal(a, b) for a, b in zip(ws.tensors, back.tensors))
    t32 = tok.tokenize(ws)
    assert t32.shape == (3, tok.num_tokens, 48)
    assert float((t32 * ~tok.mask).abs().max()) == 0.0  # padding is zero
    assert int(tok.mask.sum()) == spec.num_params
    # standardized: each tensor ~ zero mean, unit std over the batch
    vals = t32.reshape(3, -1)[:, tok.mask.reshape(-1)]
    assert abs(float(vals.mean())) < 0.2 and 0.8 < float(vals.std()) < 1.2
    # token metadata: layers in order, chunk indices restart per layer
    li = tok.layout.layer_index
    assert int(li[0]) == 0 and int(li[-1]) == len(spec.layers) - 1 and bool((li[1:] >= li[:-1]).all())
    assert int(tok.layout.chunk_index[0]) == 0


def test_per_neuron_output_tokens_are_classes():
    spec = SPECS["mlp"]()
    tok = WeightTokenizer(spec, chunk_size=33, per_neuron=True)
    lay = tok.layout
    assert lay.neuron_index[lay.is_output].tolist() == [0, 1, 2, 3, 4]
    ws = WeightSpace.init(spec, 2, generator=torch.Generator().manual_seed(1))
    tokens = tok.tokenize(ws, normalize=False)
    out_tokens = tokens[:, lay.is_output]
    w, b = ws.tensors[2], ws.tensors[3]
    assert torch.equal(out_tokens[..., :32], w) and torch.equal(out_tokens[..., 32], b)


@pytest.mark.parametrize("arch", sorted(SPECS))
@pytest.mark.parametrize("chunk", [40, 200])
def test_neuron_centric_round_trip_exact(arch, chunk):
    spec = SPECS[arch]()
    ws = WeightSpace.init(spec, 3, generator=torch.Generator().manual_seed(5)).map(lambda t: t * 2.0 - 0.5)
    tok = WeightTokenizer(spec, chunk_size=chunk, neuron_centric=True).fit(ws)
    raw = tok.detokenize(tok.tokenize(ws, normalize=False), normalize=False)
    assert all(torch.equal(a, b) for a, b in zip(ws.tensors, raw.tensors))
    back = tok.detokenize(tok.tokenize(ws, dtype=torch.float64))
    assert all(torch.equal(a, b) for a, b in zip(ws.tensors, back.tensors))
    assert int(tok.mask.sum()) == spec.num_params
    tok2 = WeightTokenizer.from_config(tok.config(), tok.state_tensors())
    assert tok2.neuron_centric and torch.equal(tok2.tokenize(ws), tok.tokenize(ws))


def test_neuron_centric_token_holds_in_bias_and_out_weights():
    spec = SPECS["mlp"]()
    tok = WeightTokenizer(spec, chunk_size=70, neuron_centric=True)
    assert tok.num_tokens == 33  # 32 hidden neurons + the output bias
    ws = WeightSpace.init(spec, 2, generator=torch.Generator().manual_seed(6))
    t = tok.tokenize(ws, normalize=False)
    w1, b1, w2, b2 = ws.tensors
    assert torch.equal(t[:, :32, :64], w1) and torch.equal(t[:, :32, 64], b1)
    assert torch.equal(t[:, :32, 65:], w2.transpose(1, 2)) and torch.equal(t[:, 32, :5], b2)
    # hidden neurons share one role; permuting them permutes their tokens
    assert tok.layout.role_index.tolist() == [0] * 32 + [1]
    from wspace.symmetry import permute, random_permutation

    perm = random_permutation(spec, 2, generator=torch.Generator().manual_seed(7))
    tp = tok.tokenize(permute(ws, perm), normalize=False)
    idx = perm.perms[0]
    assert torch.equal(tp[:, :32], t[:, :32].gather(1, idx[:, :, None].expand(-1, -1, 70)))
    with pytest.raises(WeightSpaceError, match="neuron-centric"):
        WeightTokenizer(family_spec("mlp", hidden=[], num_classes=5), 70, neuron_centric=True)


def test_readout_probe_features_fit_the_shots_and_commute_with_permutations():
    from generators.probe import readout_features

    g = torch.Generator().manual_seed(8)
    B, K, S, D, H = 3, 4, 6, 10, 16
    centres = torch.randn(B, K, 1, D, generator=g) * 3
    shots = centres + 0.3 * torch.randn(B, K, S, D, generator=g)
    w1, b1 = torch.randn(B, H, D, generator=g), torch.randn(B, H, generator=g) * 0.1
    f, bias = readout_features(w1, b1, shots, "relu", ridge=1e-3)
    assert f.shape == (B, H, 2 * K + 1) and bias.shape == (B, K)
    # the ridge readout classifies its own shots
    h = torch.relu(torch.einsum("bksd,bhd->bksh", shots, w1) + b1[:, None, None])
    logits = torch.einsum("bksh,bhc->bksc", h, f[..., :K]) + bias[:, None, None]
    assert bool((logits.argmax(-1) == torch.arange(K)[None, :, None]).all())
    perm = torch.randperm(H, generator=g)
    fp, bp = readout_features(w1[:, perm], b1[:, perm], shots, "relu", ridge=1e-3)
    assert torch.allclose(fp, f[:, perm], atol=1e-3) and torch.allclose(bp, bias, atol=1e-3)


def test_normalization_stats_saved_and_restored(tmp_path):
    spec = SPECS["cnn"]()
    ws = WeightSpace.init(spec, 4, generator=torch.Generator().manual_seed(2)).map(lambda t: t * 2 - 0.1)
    tok = WeightTokenizer(spec, 64).fit(ws)
    assert tok.fitted and not torch.allclose(tok.std, torch.ones_like(tok.std))
    tok.save(tmp_path)
    tok2 = WeightTokenizer.load(tmp_path)
    assert torch.equal(tok.mean, tok2.mean) and torch.equal(tok.std, tok2.std)
    assert tok2.spec.fingerprint == spec.fingerprint and tok2.chunk_size == 64
    assert torch.equal(tok.tokenize(ws), tok2.tokenize(ws))
    with pytest.raises(WeightSpaceError):
        tok.tokenize(WeightSpace.init(SPECS["mlp"](), 1))


def test_tokenizer_standardizes_with_the_core_weight_stats():
    from wspace.standardize import WeightStats

    spec = SPECS["mlp"]()
    ws = WeightSpace.init(spec, 5, generator=torch.Generator().manual_seed(12)).map(lambda t: t * 4.0 - 1.0)
    ws = WeightSpace(spec, [*ws.tensors[:3], torch.full_like(ws.tensors[3], 0.5)])  # a constant tensor
    tok = WeightTokenizer(spec, 48).fit(ws)
    assert isinstance(tok.stats, WeightStats) and tok.mean is tok.stats.mean and tok.std is tok.stats.std
    for t, m, sd in zip(ws.tensors, tok.mean, tok.std):
        assert torch.isclose(m, t.double().mean()) and torch.isclose(sd, t.double().std(unbiased=False)) or \
            (float(t.std()) == 0 and float(sd) == 1.0)  # a constant tensor keeps its scale
    normalized = tok.stats.normalize(ws.to(torch.float64))
    assert torch.equal(tok.tokenize(ws, dtype=torch.float64), tok.tokenize(normalized, normalize=False))
    back = tok.detokenize(tok.tokenize(ws, dtype=torch.float64))
    assert all(torch.equal(a, b) for a, b in zip(ws.tensors, back.tensors))


def test_canonicalize_preserves_functions_and_reduces_distance():
    spec = SPECS["mlp"]()
    g = torch.Generator().manual_seed(3)
    base = WeightSpace.init(spec, 1, generator=g)
    from wspace.symmetry import permute, random_permutation

    copies = permute(WeightSpace.cat([base] * 6), random_permutation(spec, 6, generator=g))
    aligned, ref = canonicalize(copies, iterations=1)
    x = torch.randn(10, 64, generator=g)
    assert torch.allclose(copies(x), aligned(x), atol=1e-5)
    spread = lambda w: float((w.flatten() - w.flatten().mean(0)).norm(dim=1).mean())  # noqa: E731
    assert spread(aligned) < 1e-5 < spread(copies)


def test_padded_positions_do_not_affect_the_loss():
    spec = SPECS["mlp"]()
    tok = WeightTokenizer(spec, chunk_size=48)
    ws = WeightSpace.init(spec, 4, generator=torch.Generator().manual_seed(4))
    tokens = tok.tokenize(ws)
    garbage = tokens + 100.0 * (~tok.mask)  # change only the padding
    vae = TokenVAE(tok.num_tokens, 48, latent_dim=4, d_model=16, depth=0, input_noise=0.0, latent_noise=0.0).eval()
    pred = torch.randn_like(tokens)
    assert torch.equal(masked_mse(pred, tokens, tok.mask), masked_mse(pred + 50.0 * (~tok.mask), tokens, tok.mask))
    l1, _ = vae(tokens, tok.mask)
    l2, _ = vae(garbage, tok.mask)
    assert torch.equal(l1, l2) and not torch.equal(garbage, tokens)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    from datasets_zoo.build import build_zoo
    from generators.d2nwg import train_d2nwg

    root = tmp_path_factory.mktemp("d2nwg")
    zoo = build_zoo("digits-tasks", root / "zoo", size="small", progress=False)
    pipe = train_d2nwg(zoo, root / "run", **TINY)
    return root, zoo, pipe


def test_end_to_end_train_sample_write_reload(tiny_run):
    from datasets_zoo import Zoo
    from wspace.commands.sample import main as sample_main

    root, zoo, pipe = tiny_run
    assert (root / "run" / "pipeline" / "model_index.json").is_file()
    assert (root / "run" / "logs" / "diffusion" / "version_0" / "metrics.csv").is_file()
    assert (root / "run" / "checkpoints" / "vae" / "last.ckpt").is_file()
    held = Zoo.open(zoo).meta["splits"]["built_heldout_tasks"][0]
    cfg = {"checkpoint": str(root / "run"), "task": held, "n": 3, "out": str(root / "samples"), "seed": 0,
           "device": "cpu", "guidance_scale": 1.5, "num_inference_steps": 3}
    metrics = sample_main(cfg)
    z = Zoo.open(root / "samples")
    assert len(z) == 3 and z.spec.fingerprint == pipe.spec.fingerprint
    assert [r["task"] for r in z.records] == [held] * 3
    assert torch.allclose(torch.tensor(z.column("test_acc"), dtype=torch.float32), metrics["test_acc"])
    ws = z.weights()
    assert all(bool(torch.isfinite(t).all()) for t in ws.tensors)
    with pytest.raises(WeightSpaceError, match="conditioned on a task's data: add task="):
        sample_main({**cfg, "task": None, "out": str(root / "samples-no-task")})
    assert not (root / "samples-no-task").exists()


def test_save_load_identical_samples(tiny_run, tmp_path):
    from generators.d2nwg import D2NWG

    _, _, pipe = tiny_run
    pipe.save_pretrained(tmp_path / "p")
    again = D2NWG.from_pretrained(tmp_path / "p")
    for sampler in ("ddim", "dpm"):
        a = pipe.sample("digits:0-1-2-3-4", 3, generator=torch.Generator().manual_seed(7), sampler=sampler)
        b = again.sample("digits:0-1-2-3-4", 3, generator=torch.Generator().manual_seed(7), sampler=sampler)
        assert all(torch.equal(x, y) for x, y in zip(a.tensors, b.tensors))
    c = pipe.sample("digits:0-1-2-3-4", 3, generator=torch.Generator().manual_seed(8))
    assert not torch.equal(a.tensors[0], c.tensors[0])


def test_pipelines_saved_before_target_still_load(tiny_run, tmp_path):
    """model_index.json files written before `_target_` existed name only `_class_name: D2NWG`."""
    import json

    from generators.d2nwg import D2NWG
    from generators.pipeline import WeightGenerator

    _, _, pipe = tiny_run
    d = pipe.save_pretrained(tmp_path / "old")
    index = json.loads((d / "model_index.json").read_text())
    assert index["_target_"] == "generators.d2nwg.D2NWG" and index["_class_name"] == "D2NWG"
    del index["_target_"]
    (d / "model_index.json").write_text(json.dumps(index))
    a = pipe.sample("digits:0-1-2-3-4", 2, generator=torch.Generator().manual_seed(1))
    for loader in (D2NWG, WeightGenerator):
        again = loader.from_pretrained(d)
        assert type(again) is D2NWG
        b = again.sample("digits:0-1-2-3-4", 2, generator=torch.Generator().manual_seed(1))
        assert all(torch.equal(x, y) for x, y in zip(a.tensors, b.tensors))
    with pytest.raises(WeightSpaceError, match="conditioned on a task"):
        pipe.sample(None, 2)


def test_denoiser_commutes_with_hidden_neuron_permutations(tiny_run):
    _, _, pipe = tiny_run
    den = pipe.denoiser.eval()
    assert den.probe_dim > 0 and pipe.tokenizer.neuron_centric
    g = torch.Generator().manual_seed(9)
    T, L = pipe.tokenizer.num_tokens, pipe.vae.config["latent_dim"]
    z = torch.randn(2, T, L, generator=g)
    shots = pipe.condition("digits:0-1-2-3-4", 2, 3, g)
    perm = torch.cat([torch.randperm(T - 1, generator=g), torch.tensor([T - 1])])
    t = torch.tensor([10, 500])
    with torch.no_grad():
        cond = den.condition_tokens(shots)
        a = den(z, t, cond, None, pipe.probe(z, shots))
        b = den(z[:, perm], t, cond, None, pipe.probe(z[:, perm], shots))
    assert torch.allclose(a[:, perm], b, atol=1e-4)


def test_wrong_class_count_raises(tiny_run):
    _, _, pipe = tiny_run
    with pytest.raises(WeightSpaceError, match="classes"):
        pipe.sample("digits:0-1-2", 2)
    with pytest.raises(WeightSpaceError, match="classes"):
        pipe.sample("digits", 2)


def test_config_rejects_unknown_keys():
    from generators.d2nwg import resolve_config

    with pytest.raises(WeightSpaceError, match="unknown D2NWG setting 'vae.stepz'"):
        resolve_config(vae={"stepz": 3})


def test_cli_config_composes():
    from omegaconf import OmegaConf

    from wspace.config import compose_config

    for ov in (["generator=d2nwg", "zoo=/z", "out=/o"], ["task=generate", "generator=d2nwg", "zoo=/z", "out=/o"]):
        cfg = compose_config("train", ov)
        assert not OmegaConf.missing_keys(cfg)
        assert cfg.task.name == "generate" and cfg.generator.name == "d2nwg"
    cfg = compose_config("sample", ["checkpoint=/c", "task=digits:0-1-2-3-4", "out=/o"])
    assert cfg.n == 16 and cfg.guidance_scale is None
