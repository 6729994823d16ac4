"""IGPG's first stage: chunk descriptors and the VQ autoencoder of weight chunks."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from generators.autoencoders import masked_mse
from generators.igpg import DESCRIPTOR_FIELDS, ChunkVQVAE, chunk_descriptors, codebook_usage
from generators.igpg.vq_stage import MixedBatches, train_chunk_vq
from generators.tokenizer import WeightTokenizer
from wspace import GlobalAvgPool, WeightSpaceError, spec_from_module
from wspace.families import family_spec, init_weight_space

CHUNK = 16


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _cnn_spec():
    return spec_from_module(nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 16, 3, padding=1),
                                          nn.ReLU(), GlobalAvgPool(), nn.Linear(16, 5)))


def _tok(spec, n=32, seed=0):
    ws = init_weight_space(spec, n, generator=_gen(seed))
    tk = WeightTokenizer(spec, chunk_size=CHUNK, per_neuron=False).fit(ws)
    return tk, tk.tokenize(ws), ws


def test_descriptors_say_where_every_chunk_sits():
    mlp = family_spec("mlp", in_features=64, hidden=[32, 32, 32], num_classes=5)
    tk, _, _ = _tok(mlp)
    d = chunk_descriptors(tk)
    assert d.shape == (tk.num_tokens, len(DESCRIPTOR_FIELDS))
    f = {name: d[:, i] for i, name in enumerate(DESCRIPTOR_FIELDS)}
    lay = tk.layout
    assert torch.equal(f["depth"], lay.layer_index.long()) and torch.equal(f["chunk"], lay.chunk_index.long())
    first = f["depth"] == 0
    assert (f["in_features"][first] == 64).all() and (f["out_features"][first] == 32).all()
    assert torch.equal(f["from_end"] == 0, lay.is_output)  # the output layer, whatever the depth
    assert (f["chunk"] < f["chunks"]).all() and (f["kind"] == 0).all() and (f["kernel"] == 1).all()
    # 64 * 32 weights + 32 biases in chunks of 16
    assert int(f["chunks"][first][0]) == -(-(64 * 32 + 32) // CHUNK)
    cnn, _, _ = _tok(_cnn_spec())
    dc = chunk_descriptors(cnn)
    conv = dc[:, 0] == 1
    assert conv.any() and (dc[conv, 3] == 9).all() and (dc[~conv, 3] == 1).all()


def test_one_model_codes_two_architectures_and_indices_decode_like_vectors():
    model = ChunkVQVAE(CHUNK, codebook_size=64, code_dim=8, d_model=32, depth=1, num_quantizers=2)
    for spec in (family_spec("mlp", in_features=64, hidden=[32, 32, 32], num_classes=5), _cnn_spec()):
        tk, tokens, _ = _tok(spec, n=8)
        desc = chunk_descriptors(tk)
        recon, idx, commit = model(tokens, desc)
        assert recon.shape == tokens.shape and idx.shape == (*tokens.shape[:2], 2) and commit.dim() == 0
        model.eval()
        q, idx, _ = model.encode(tokens, desc)
        assert torch.allclose(model.decode(idx, desc), model.decode(q, desc), atol=1e-6)
        model.train()
    with pytest.raises(WeightSpaceError, match="code indices"):
        model.decode(torch.full((1, 3, 2), 64), desc[:3])


def test_descriptors_outside_the_vocabulary_are_a_clear_error():
    model = ChunkVQVAE(CHUNK, codebook_size=16, code_dim=4, d_model=16, depth=1, max_size=32)
    tk, tokens, _ = _tok(family_spec("mlp", in_features=64, hidden=[8], num_classes=5), n=2)
    with pytest.raises(WeightSpaceError, match="in_features=64 is outside.*max_size"):
        model(tokens, chunk_descriptors(tk))


def test_training_reconstructs_and_uses_the_codebook():
    """A zoo with structure (noisy copies of 8 networks, as checkpoints of a few runs are):
    the codebook learns it; i.i.d. noise weights could not be compressed this way."""
    torch.manual_seed(0)
    spec = family_spec("mlp", in_features=16, hidden=[8], num_classes=3)
    protos = init_weight_space(spec, 8, generator=_gen(1))
    ws = protos.map(lambda t: t.repeat(8, *[1] * (t.dim() - 1)))
    ws = ws.map(lambda t: t + 0.02 * torch.randn(t.shape, generator=_gen(2)))
    tk = WeightTokenizer(spec, chunk_size=CHUNK, per_neuron=False).fit(ws)
    tokens = tk.tokenize(ws)
    desc, mask = chunk_descriptors(tk), tk.mask
    model = ChunkVQVAE(CHUNK, codebook_size=128, code_dim=8, d_model=64, depth=2)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    first = None
    for step in range(300):
        recon, idx, commit = model(tokens, desc)
        loss = masked_mse(recon, tokens, mask)
        first = float(loss.detach()) if first is None else first
        opt.zero_grad()
        (loss + commit).backward()
        opt.step()
    model.eval()
    recon, idx, _ = model(tokens, desc)
    final = float(masked_mse(recon.detach(), tokens, mask))
    stats = codebook_usage(idx, 128)
    assert final < 0.1 * first, (first, final, stats)
    net = tk.detokenize(recon.detach())  # back to networks: close to the zoo's
    assert float((net.flatten() - ws.flatten()).pow(2).mean()) < 0.1 * float(ws.flatten().var())
    assert stats["usage"] > 0.25 and stats["perplexity"] > 16, stats


def test_mixed_batches_alternate_architectures_and_resume_exactly():
    a, b = torch.randn(10, 3, 4), torch.randn(7, 5, 4)
    full = MixedBatches([a, b], batch_size=3, seed=1)
    it = iter(full)
    first = [next(it) for _ in range(7)]
    assert [int(x[0]) for x in first] == [0, 1, 0, 1, 0, 1, 0]
    assert all(x[1].shape[1:] == (a if int(x[0]) == 0 else b).shape[1:] for x in first)
    resumed = MixedBatches([a, b], batch_size=3, seed=1)
    resumed.resume_at(3)
    it = iter(resumed)
    for want in first[3:]:
        got = next(it)
        assert int(got[0]) == int(want[0]) and torch.equal(got[1], want[1])


def test_train_chunk_vq_on_two_architectures(tmp_path):
    zoos = {"mlp": init_weight_space(family_spec("mlp", in_features=16, hidden=[8], num_classes=3), 12,
                                     generator=_gen(0)),
            "cnn": init_weight_space(_cnn_spec(), 12, generator=_gen(1))}
    queries = {"mlp": torch.randn(8, 16, generator=_gen(2))}
    cfg = dict(chunk_size=16, codebook_size=32, code_dim=8, d_model=32, depth=1, num_quantizers=2, steps=12,
               warmup=2, batch_size=4, behaviour_start=0.5)
    model, tks = train_chunk_vq(zoos, tmp_path / "run", cfg, queries=queries)
    assert set(tks) == {"mlp", "cnn"} and (tmp_path / "run" / "checkpoints" / "vq" / "last.ckpt").is_file()
    for name, ws in zoos.items():
        tokens = tks[name].tokenize(ws)
        _, idx, _ = model.encode(tokens, chunk_descriptors(tks[name]))
        assert idx.shape == (len(ws), tks[name].num_tokens, 2)
    # the same run again resumes (nothing to train); other settings into the same folder refuse
    train_chunk_vq(zoos, tmp_path / "run", cfg, queries=queries)
    with pytest.raises(WeightSpaceError, match="IGPG VQ stage.*codebook_size"):
        train_chunk_vq(zoos, tmp_path / "run", {**cfg, "codebook_size": 64}, queries=queries)
    with pytest.raises(WeightSpaceError, match="unknown IGPG VQ setting"):
        train_chunk_vq(zoos, tmp_path / "bad", {"codebook": 3})
