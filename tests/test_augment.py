"""wspace.augment: function preservation, randomness, INR edits, Mixup and data-loading integration."""
from __future__ import annotations

import math

import pytest
import torch
from torch.utils.data import DataLoader

import wspace.augment as A
from tests.nets import make
from wspace import WeightSpace, WeightSpaceError
from wspace.symmetry import permute, random_permutation


def _ws(name: str, n: int = 4, seed: int = 0):
    mods, x = make(name, n, seed)
    return WeightSpace.from_modules(mods).to(torch.float64), x.double()


def _changed(a: WeightSpace, b: WeightSpace) -> float:
    return float((a.flatten() - b.flatten()).abs().max())


# ------------------------------------------------------------------ function-preserving
FAMILIES = ["mlp", "mlp_nobias", "siren", "cnn2d", "cnn1d", "res_mlp"]


@pytest.mark.parametrize("family", FAMILIES)
def test_function_preserving_transforms(family):
    ws, x = _ws(family)
    y = ws(x)
    transforms = {
        "perm": A.RandomPermutation(generator=1),
        "scale": A.RandomScaling(generator=2),
        "sign": A.RandomSignFlip(generator=3),
        "shift": A.SirenBiasShift(generator=4),
    }
    transforms["all"] = A.Compose(list(transforms.values()))
    acts = set(ws.spec.activations)
    for name, t in transforms.items():
        out = t(ws)
        assert torch.allclose(out(x), y, atol=1e-9, rtol=1e-7), (family, name)
        # the transform really moved the weights when the architecture allows it
        expected = {"perm": True, "scale": bool(acts & {"relu"}), "sign": bool(acts & {"tanh", "sine"}),
                    "shift": family == "siren", "all": True}[name]
        assert (_changed(out, ws) > 1e-3) == expected, (family, name)


def test_siren_bias_shift_math_and_w0_from_spec():
    from wspace.families import family_spec, init_weight_space

    spec = family_spec("siren", hidden=[16, 16], w0=7.0)
    assert {g: w0 for g, (_, w0) in A.sine_groups(spec).items()} == {0: 7.0, 1: 7.0}
    ws = init_weight_space(spec, 8, generator=torch.Generator().manual_seed(0)).to(torch.float64)
    x = torch.rand(50, 2, dtype=torch.float64) * 2 - 1
    out = A.SirenBiasShift(k_max=4, generator=0)(ws)
    assert torch.allclose(out(x), ws(x), atol=1e-9)
    # bias shifts are integer multiples of pi / w0, some odd (those need the sign flip)
    k = (out.biases[0] - ws.biases[0]) / (math.pi / 7.0)
    assert torch.allclose(k, k.round(), atol=1e-9) and bool((k.round() % 2 == 1).any())
    # the shift alone (without the outgoing sign flip) changes the function: the flip is needed
    shifted_only = WeightSpace(spec, [out.tensors[0], out.tensors[1], *ws.tensors[2:]])
    assert not torch.allclose(shifted_only(x), ws(x), atol=1e-3)


def test_seeded_reproducible_and_fresh_each_call():
    ws, _ = _ws("mlp", 6)
    a, b = A.RandomPermutation(generator=7), A.RandomPermutation(generator=7)
    first = a(ws)
    assert _changed(first, b(ws)) == 0.0  # same seed -> same draw
    assert _changed(first, a(ws)) > 1e-3  # next call -> new draw


# ------------------------------------------------------------------ data-agnostic
def test_gaussian_noise_random_and_scaled():
    torch.manual_seed(0)
    ws = WeightSpace.from_flat(_ws("mlp", 3)[0].spec, torch.randn(3, _ws("mlp", 3)[0].spec.num_params) * 3.0)
    noise = A.GaussianNoise(0.32, generator=0)
    n1, n2 = noise(ws) - ws, noise(ws) - ws
    assert _changed(n1, n2) > 1e-3  # a fresh draw every call, not a constant shift
    big = [i for i, p in enumerate(ws.spec.params) if p.numel >= 512]
    assert big
    for i in big:
        d, t = n1.tensors[i].reshape(3, -1), ws.tensors[i].reshape(3, -1)
        ratio = d.std(1) / t.std(1)  # per network
        assert torch.allclose(ratio, torch.full_like(ratio, 0.32), atol=0.03), ratio
        assert d.mean(1).abs().max() < 0.1 * t.std(1).min()  # zero-mean noise
    # weights only: biases untouched
    only_w = A.GaussianNoise(0.32, biases=False, generator=0)(ws)
    for p, a, b in zip(ws.spec.params, only_w.tensors, ws.tensors):
        assert torch.equal(a, b) == (p.role == "bias")


def test_dropout_and_quantile():
    ws, _ = _ws("mlp", 8)
    out = A.WeightDropout(0.1, generator=0)(ws)
    flat, orig = out.flatten(), ws.flatten()
    dropped = (flat == 0) & (orig != 0)
    assert 0.07 < float(dropped.float().mean()) < 0.13
    kept = ~dropped
    assert torch.allclose(flat[kept], orig[kept] / 0.9)
    out = A.WeightDropout(0.1, rescale=False, weights=False, generator=0)(ws)
    assert all(torch.equal(a, b) for p, a, b in zip(ws.spec.params, out.tensors, ws.tensors) if p.role == "weight")

    q = A.QuantileZeroing(0.1, generator=0)(ws)
    zero_frac = (q.flatten() == 0).float().mean(1)
    assert bool((zero_frac <= 0.1 + 1e-3).all()) and bool((zero_frac > 0).any())
    # the zeroed entries are exactly the smallest ones of each network
    mags, qf = ws.flatten().abs(), q.flatten()
    for b in range(len(ws)):
        z = qf[b] == 0
        if z.any() and (~z).any():
            assert mags[b][z].max() <= mags[b][~z].min()


def test_random_apply_and_choice_per_network():
    ws, x = _ws("mlp", 400)
    out = A.RandomApply(A.GaussianNoise(generator=1), p=0.3, generator=0)(ws)
    changed = (out.flatten() != ws.flatten()).any(1).float()
    assert 0.22 < float(changed.mean()) < 0.38
    assert _changed(A.RandomApply(A.GaussianNoise(), p=0.0)(ws), ws) == 0.0
    choice = A.RandomChoice([A.GaussianNoise(generator=1), A.Lambda(lambda w: w)], generator=0)(ws)
    frac = (choice.flatten() != ws.flatten()).any(1).float().mean()
    assert 0.4 < float(frac) < 0.6


def test_denormalized_keeps_function_on_normalized_data():
    from datasets_zoo.dataset import WeightStats

    ws, x = _ws("mlp_nobias", 4)
    P = len(ws.spec.params)
    stats = WeightStats(ws.spec, torch.linspace(0.1, 0.3, P), torch.linspace(0.5, 2.0, P))
    norm = stats.normalize(ws)
    t = A.Denormalized(A.RandomSignFlip(generator=0), stats)
    assert torch.allclose(stats.denormalize(t(norm))(x), ws(x), atol=1e-9)
    # applied directly to normalized weights the sign flip is not function-preserving
    naive = stats.denormalize(A.RandomSignFlip(generator=0)(norm))
    assert not torch.allclose(naive(x), ws(x), atol=1e-3)


def test_worker_generators_differ(monkeypatch):
    ws, _ = _ws("mlp", 2)
    t = A.GaussianNoise(generator=0)
    outs = []
    for wid in (0, 1):
        info = type("Info", (), {"id": wid, "seed": 1234 + wid})()
        monkeypatch.setattr(torch.utils.data, "get_worker_info", lambda info=info: info)
        outs.append(t(ws))
    assert _changed(outs[0], outs[1]) > 1e-3


# ------------------------------------------------------------------ INR edits
def _siren64():
    ws, x = _ws("siren", 4)
    return ws, x


def test_inr_affine_exact():
    ws, x = _siren64()
    g = torch.Generator().manual_seed(0)
    Am = torch.randn(4, 2, 2, generator=g, dtype=torch.float64)
    t = torch.randn(4, 2, generator=g, dtype=torch.float64)
    out = A.inr_affine(ws, Am, t)
    xt = torch.einsum("bij,nj->bni", Am, x) + t[:, None]  # [B, N, 2]: A x + t per network
    assert torch.allclose(out(x), ws(xt), atol=1e-8)


def _recover_A(ws: WeightSpace, out: WeightSpace) -> torch.Tensor:
    W, Wn = ws.weights[0], out.weights[0]
    return torch.linalg.lstsq(W, Wn).solution  # W @ A = Wn


def test_random_rotation_scale_translation():
    ws, x = _siren64()
    rot = A.RandomRotation(30.0, generator=0)(ws)
    R = _recover_A(ws, rot)
    eye = torch.eye(2, dtype=torch.float64).expand(4, 2, 2)
    assert torch.allclose(R.transpose(1, 2) @ R, eye, atol=1e-8)
    assert torch.allclose(torch.linalg.det(R), torch.ones(4, dtype=torch.float64), atol=1e-8)
    angle = torch.atan2(R[:, 1, 0], R[:, 0, 0]).abs()
    assert bool((angle <= math.radians(30) + 1e-9).all()) and bool((angle > 0).all())
    assert torch.allclose(rot(x), ws(torch.einsum("bij,nj->bni", R, x)), atol=1e-8)
    assert torch.equal(rot.biases[0], ws.biases[0])

    sc = A.RandomScale(0.2, generator=0)(ws)
    S = _recover_A(ws, sc)
    s = S[:, 0, 0]
    assert torch.allclose(S, s[:, None, None] * eye, atol=1e-8)
    assert bool(((s >= 0.8) & (s <= 1.2)).all()) and s.unique().numel() == 4
    assert torch.allclose(sc(x), ws(s[:, None, None] * x), atol=1e-8)

    tr = A.RandomTranslation(0.25, generator=0)(ws)
    assert torch.equal(tr.weights[0], ws.weights[0])
    tvec = torch.linalg.lstsq(ws.weights[0], (tr.biases[0] - ws.biases[0]).unsqueeze(-1)).solution.squeeze(-1)
    assert bool((tvec.abs() <= 0.25 + 1e-9).all())
    assert torch.allclose(tr(x), ws(x + tvec[:, None]), atol=1e-8)


def test_inr_edits_reject_non_inr():
    cnn, _ = _ws("cnn2d")
    with pytest.raises(WeightSpaceError):
        A.RandomTranslation()(cnn)
    mlp3, _ = _ws("mlp_nobias")  # 3 input coordinates, no bias
    with pytest.raises(WeightSpaceError):
        A.RandomRotation()(mlp3)
    with pytest.raises(WeightSpaceError):
        A.RandomTranslation()(mlp3)


# ------------------------------------------------------------------ Mixup
@pytest.mark.parametrize("align", [None, "random", "weight_matching"])
def test_mixup_lam_one_returns_first(align):
    a, _ = _ws("mlp", 4, seed=0)
    b, _ = _ws("mlp", 4, seed=1)
    out, _ = A.MixUp(align=align, generator=0)(a, b, lam=1.0)
    assert _changed(out, a) < 1e-12


def test_aligned_mixup_of_permuted_copy_preserves_function():
    for family in ("mlp", "siren", "cnn2d"):
        ws, x = _ws(family, 4)
        perm = permute(ws, random_permutation(ws.spec, 4, torch.Generator().manual_seed(3)))
        aligned, _ = A.MixUp(align="weight_matching", generator=0)(ws, perm, lam=0.5)
        assert torch.allclose(aligned(x), ws(x), atol=1e-8), family
        naive, _ = A.MixUp(align=None)(ws, perm, lam=0.5)
        assert (naive(x) - ws(x)).abs().max() > 1e-2, family
        # canonicalization is exact for the reference itself; other networks may land in
        # different local optima of weight matching (coordinate descent), so only approximately
        ref = A.MixUp(align="reference", reference=ws[0])
        canon, _ = ref(ws, perm, lam=0.5)
        assert torch.allclose(canon(x)[0], ws(x)[0], atol=1e-8), family


def test_mixup_labels_match_weight_coefficient():
    a, _ = _ws("mlp", 5, seed=0)
    b, _ = _ws("mlp", 5, seed=1)
    ya, yb = torch.tensor([0, 1, 2, 3, 4]), torch.tensor([4, 3, 2, 1, 0])
    mix = A.MixUp(num_classes=5, generator=0)
    out, y = mix(a, b, ya, yb)
    # recover lam per pair from the weights: out = lam a + (1 - lam) b
    fa, fb, fo = a.flatten(), b.flatten(), out.flatten()
    lam = ((fo - fb) * (fa - fb)).sum(1) / (fa - fb).square().sum(1)
    assert bool(((lam > 0) & (lam < 1)).all()) and lam.unique().numel() == 5  # per pair
    assert y.shape == (5, 5) and torch.allclose(y.sum(1), torch.ones(5))
    expect = lam.float()[:, None] * torch.eye(5)[ya] + (1 - lam.float()[:, None]) * torch.eye(5)[yb]
    assert torch.allclose(y, expect, atol=1e-5)
    # regression targets mix directly
    _, r = mix(a, b, torch.ones(5), torch.zeros(5), lam=torch.linspace(0, 1, 5))
    assert torch.allclose(r, torch.linspace(0, 1, 5))
    # weights-only keeps the dominant network's hard label
    wo = A.MixUp(weights_only=True)
    _, h = wo(a, b, ya, yb, lam=torch.tensor([0.9, 0.2, 0.5, 0.49, 1.0]))
    assert torch.equal(h, torch.tensor([0, 3, 2, 1, 4]))
    with pytest.raises(WeightSpaceError):
        A.MixUp()(a, b, ya, yb)  # class indices without num_classes


def test_mixup_beta_alpha():
    lam = A.MixUp(alpha=0.2, generator=0).sample_lam(4000)
    # Beta(0.2, 0.2) is U-shaped: most mass near 0 and 1
    assert float(((lam < 0.1) | (lam > 0.9)).float().mean()) > 0.5
    assert abs(float(lam.mean()) - 0.5) < 0.05


def test_alignment_caches():
    a, x = _ws("mlp", 6, seed=0)
    b, _ = _ws("mlp", 6, seed=1)
    cache = A.PairAlignmentCache()
    mix = A.MixUp(align="weight_matching", cache=cache, generator=0)
    ia, ib = list(range(6)), list(range(10, 16))
    first, _ = mix(a, b, lam=0.5, index_a=ia, index_b=ib)
    assert cache.misses == 6 and len(cache) == 6
    again, _ = mix(a, b, lam=0.5, index_a=ia, index_b=ib)
    assert cache.hits == 6 and _changed(first, again) < 1e-12
    # reversed pairs reuse the inverse permutation: aligned b->a and a->b give the same function mix
    rev, _ = mix(b, a, lam=0.5, index_a=ib, index_b=ia)
    assert cache.hits == 12
    aligner = A.ReferenceAligner(a[0])
    c1 = aligner(b, indices=ib)
    assert len(aligner.store) == 6 and torch.allclose(c1(x), b(x), atol=1e-8)
    assert _changed(aligner(b, indices=ib), c1) == 0.0


# ------------------------------------------------------------------ data loading
@pytest.fixture(scope="module")
def tiny_zoo(tmp_path_factory):
    from datasets_zoo import Zoo
    from datasets_zoo.build import build_zoo

    path = build_zoo("digits-inr", tmp_path_factory.mktemp("zoo") / "inr", size="small", progress=False)
    return Zoo.open(path)


def test_zoo_dataset_transform_and_mixup_collate(tiny_zoo):
    from datasets_zoo.dataset import collate_dense

    plain = tiny_zoo.dataset("train", target="class", normalize=True)
    t = A.Compose([A.RandomPermutation(generator=0), A.GaussianNoise(generator=1)])
    aug = tiny_zoo.dataset("train", target="class", normalize=True, transform=t)
    n = len(aug)
    ws_plain, y_plain = collate_dense(plain.__getitems__(list(range(n))))
    ws_aug, y_aug = next(iter(aug.loader(batch_size=n, shuffle=False)))
    assert torch.equal(y_plain, y_aug) and _changed(ws_aug, ws_plain) > 1e-2

    fp = tiny_zoo.dataset("train", target="class", transform=A.Compose([
        A.RandomPermutation(generator=0), A.SirenBiasShift(generator=1), A.RandomSignFlip(generator=2)]))
    raw = tiny_zoo.dataset("train", target="class")
    coords = torch.rand(64, 2) * 2 - 1
    assert torch.allclose(raw.weights(range(n))(coords), fp.weights(range(n))(coords), atol=1e-4)

    nc = 10
    collate = A.MixUpCollate(A.MixUp(align="weight_matching", cache=True, generator=0), num_classes=nc, generator=0)
    loader = DataLoader(A.WithIndex(plain), batch_size=4, shuffle=True, collate_fn=collate,
                        generator=torch.Generator().manual_seed(0))
    batches = list(loader)
    assert sum(len(ws) for ws, _ in batches) == n
    for ws, y in batches:
        assert isinstance(ws, WeightSpace) and y.shape == (len(ws), nc)
        assert torch.allclose(y.sum(1), torch.ones(len(ws)))
    assert collate.mixup.cache.misses > 0
    # plain (ws, y) items work too, and p=0 leaves the batch as it is (labels one-hot)
    ident = A.MixUpCollate(A.MixUp(), num_classes=nc, p=0.0)
    ws, y = ident(plain.__getitems__([0, 1, 2]))
    assert _changed(ws, collate_dense(plain.__getitems__([0, 1, 2]))[0]) == 0.0
    assert torch.equal(y.argmax(1), y_plain[:3])


# ------------------------------------------------------------------ sign canonical form
def _tanh_mlp(n: int = 4):
    torch.manual_seed(5)
    mods = [torch.nn.Sequential(torch.nn.Linear(3, 6), torch.nn.Tanh(), torch.nn.Linear(6, 5), torch.nn.Tanh(),
                                torch.nn.Linear(5, 2)) for _ in range(n)]
    return WeightSpace.from_modules(mods).to(torch.float64), torch.randn(7, 3, dtype=torch.float64)


@pytest.mark.parametrize("family", ["siren", "tanh", "mlp"])
def test_canonicalize_signs_is_function_preserving_idempotent_and_removes_sign_flips(family):
    from wspace.symmetry import canonical_signs, canonicalize_signs, random_sign_flip

    ws, x = _tanh_mlp() if family == "tanh" else _ws(family)
    canon = canonicalize_signs(ws)
    assert torch.allclose(canon(x), ws(x), atol=1e-10)
    assert _changed(canonicalize_signs(canon), canon) == 0.0  # idempotent
    flipped = random_sign_flip(ws, 0.5, generator=torch.Generator().manual_seed(1))
    assert _changed(canonicalize_signs(flipped), canon) < 1e-12  # one representative per sign orbit
    p = random_permutation(ws.spec, len(ws), torch.Generator().manual_seed(2))
    assert _changed(canonicalize_signs(permute(ws, p)), permute(canon, p)) < 1e-12  # permutation-equivariant
    signed = canonical_signs(ws)
    if family == "mlp":  # ReLU: no sign symmetry, nothing to do
        assert signed == {} and _changed(canon, ws) == 0.0
    else:
        assert signed and any(bool((f < 0).any()) for f in signed.values())  # it did flip something
        for g, f in canonical_signs(canon).items():
            assert bool((f > 0).all())


def _check_mixup_on_normalized(ws: WeightSpace, other: WeightSpace, x: torch.Tensor, lam: float, **canonical) -> None:
    """Aligned Mixup of normalized ``ws`` and ``other`` (the same function) keeps the function:
    flips and shifts are taken on raw weights through ``stats``."""
    from datasets_zoo.dataset import WeightStats

    stats = WeightStats(ws.spec, torch.stack([t.mean() + 0.3 for t in ws.tensors]),
                        torch.stack([t.std() + 0.5 for t in ws.tensors]), 4)
    mix = A.MixUp(align="weight_matching", stats=stats, generator=0, **canonical)
    out, _ = mix(stats.normalize(ws), stats.normalize(other), lam=lam)
    assert torch.allclose(stats.denormalize(out)(x), ws(x), atol=1e-8)


def test_sign_canonical_aligned_mixup_undoes_permutations_and_sign_flips():
    """Weight matching searches permutations only: a permuted *and* sign-flipped copy is
    matched exactly once both networks are in sign-canonical form (raw or normalized data)."""
    from wspace.symmetry import random_sign_flip

    for make_ws in (lambda: _ws("siren"), _tanh_mlp):
        ws, x = make_ws()
        other = random_sign_flip(permute(ws, random_permutation(ws.spec, 4, torch.Generator().manual_seed(3))),
                                 0.5, generator=torch.Generator().manual_seed(4))
        plain, _ = A.MixUp(align="weight_matching", generator=0)(ws, other, lam=0.5)
        assert (plain(x) - ws(x)).abs().max() > 1e-2  # the flips defeat permutation-only matching
        signs = A.MixUp(align="weight_matching", canonical_signs=True, generator=0)
        out, _ = signs(ws, other, lam=0.5)
        assert torch.allclose(out(x), ws(x), atol=1e-8)
        assert _changed(out, ws) < 1e-10  # mixed in ws's own frame: its signs, not the canonical ones
        assert _changed(signs(ws, other, lam=1.0)[0], ws) == 0.0
        # on normalized batches the flips are taken on raw weights (stats), and mixing commutes
        _check_mixup_on_normalized(ws, other, x, lam=0.5, canonical_signs=True)
    with pytest.raises(WeightSpaceError, match="canonical_signs / canonical_phases need align='weight_matching'"):
        A.MixUp(align=None, canonical_signs=True)


# ------------------------------------------------------------------ phase (SIREN bias shift) canonical form
def _shift_flip_permute(ws: WeightSpace, seed: int) -> WeightSpace:
    """A random element of a SIREN's full symmetry group: bias shift, sign flip, permutation."""
    from wspace.symmetry import random_sign_flip

    out = A.SirenBiasShift(k_max=4, generator=seed)(ws)
    out = random_sign_flip(out, 0.5, generator=torch.Generator().manual_seed(seed + 1))
    return permute(out, random_permutation(ws.spec, len(ws), torch.Generator().manual_seed(seed + 2)))


def test_shift_phases_round_trip_and_errors():
    from wspace.symmetry import shift_phases, sine_groups

    ws, x = _ws("siren")
    groups = sine_groups(ws.spec)
    k = {g: torch.randint(-3, 4, (len(ws), ws.spec.groups[g].size), generator=torch.Generator().manual_seed(g))
         for g in groups}
    shifted = shift_phases(ws, k)
    assert _changed(shifted, ws) > 0.1 and torch.allclose(shifted(x), ws(x), atol=1e-9)
    assert _changed(shift_phases(shifted, {g: -v for g, v in k.items()}), ws) < 1e-12
    g0 = next(iter(groups))
    with pytest.raises(WeightSpaceError, match="must be integers"):
        shift_phases(ws, {g0: k[g0].double() + 0.5})
    tanh, _ = _tanh_mlp()
    with pytest.raises(WeightSpaceError, match="does not feed a sine activation"):
        shift_phases(tanh, {0: torch.zeros(4, 6, dtype=torch.long)})


@pytest.mark.parametrize("family", ["siren", "tanh", "mlp"])
def test_canonicalize_phases_is_function_preserving_idempotent_and_removes_shifts_and_flips(family):
    from wspace.symmetry import canonicalize_phases, canonicalize_signs, sine_groups

    ws, x = _tanh_mlp() if family == "tanh" else _ws(family)
    canon = canonicalize_phases(ws)
    assert torch.allclose(canon(x), ws(x), atol=1e-9)
    assert _changed(canonicalize_phases(canon), canon) < 1e-12  # idempotent
    p = random_permutation(ws.spec, len(ws), torch.Generator().manual_seed(2))
    assert _changed(canonicalize_phases(permute(ws, p)), permute(canon, p)) < 1e-12  # permutation-equivariant
    groups = sine_groups(ws.spec)
    if family != "siren":  # no sine neurons: exactly the sign-canonical form
        assert not groups and _changed(canon, canonicalize_signs(ws)) == 0.0
        return
    assert groups
    for g, (layer, w0) in groups.items():  # every phase w0 * b lands in [0, pi / 2]
        phase = canon.tensors[ws.spec.layers[layer].bias] * w0
        assert bool((phase >= 0).all()) and bool((phase <= math.pi / 2 + 1e-9).all())
    other = A.SirenBiasShift(k_max=4, generator=7)(A.RandomSignFlip(0.5, generator=8)(ws))
    assert _changed(other, ws) > 0.1
    assert _changed(canonicalize_phases(other), canon) < 1e-10  # one representative per shift / flip orbit
    assert _changed(canonicalize_signs(other), canonicalize_signs(ws)) > 0.1  # signs alone do not undo shifts


def test_phase_canonical_aligned_mixup_undoes_shifts_flips_and_permutations():
    """A copy moved by a bias shift, a sign flip and a permutation is matched exactly only
    with ``canonical_phases=True``; the mix stays in the first network's own frame."""
    ws, x = _ws("siren")
    other = _shift_flip_permute(ws, seed=3)
    signs_only, _ = A.MixUp(align="weight_matching", canonical_signs=True, generator=0)(ws, other, lam=0.5)
    assert (signs_only(x) - ws(x)).abs().max() > 1e-2
    mix = A.MixUp(align="weight_matching", canonical_phases=True, generator=0)
    assert mix.canonical_signs  # phases imply signs
    out, _ = mix(ws, other, lam=0.5)
    assert torch.allclose(out(x), ws(x), atol=1e-8) and _changed(out, ws) < 1e-10
    assert _changed(mix(ws, other, lam=1.0)[0], ws) == 0.0
    _check_mixup_on_normalized(ws, other, x, lam=0.3, canonical_phases=True)
