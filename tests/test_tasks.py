"""Bundled tasks: fixed splits, class subsets, INR targets, affine variants, MNIST-1D."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from datasets_zoo import tasks
from datasets_zoo.tasks import digits, lookup
from datasets_zoo.tasks import affine_variants, get_task, subset_tasks, targets_to_images
from wspace.coordinates import coordinate_grid
from wspace.errors import WeightSpaceError


# --------------------------------------------------------------------------- digits
def test_digits_split_sizes_and_determinism():
    t = get_task("digits")
    assert t.name == "digits" and t.kind == "classification"
    assert t.x_train.shape == (1437, 64) and t.x_test.shape == (360, 64)
    assert t.x_train.dtype == torch.float32 and t.y_train.dtype == torch.int64
    assert t.input_shape == (64,) and t.num_classes == 10 and t.classes == tuple(range(10))
    assert 0.0 <= float(t.x_train.min()) and float(t.x_train.max()) == 1.0
    # a disjoint partition of all 1,797 images
    idx = torch.cat([t.index_train, t.index_test])
    assert torch.equal(idx.sort().values, torch.arange(1797))
    # cached, and rebuilt from scratch gives the same bytes (split seeded, not global RNG)
    assert get_task("digits") is t
    lookup.task_by_canonical_name.cache_clear()
    digits.digits_source.cache_clear()
    t2 = get_task("digits")
    assert t2 is not t and t2.fingerprint == t.fingerprint
    assert torch.equal(t2.x_test, t.x_test) and torch.equal(t2.y_train, t.y_train)


def test_digits_split_is_stratified():
    t = get_task("digits")
    n_tr = torch.bincount(t.y_train, minlength=10)
    n_te = torch.bincount(t.y_test, minlength=10)
    totals = n_tr + n_te
    assert totals.tolist() == [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]
    quota = totals.double() * 360 / 1797
    assert ((n_te.double() - quota).abs() < 1.0).all()
    assert int(n_te.sum()) == 360


def test_digits_image_view_matches_flat():
    flat, img = get_task("digits"), get_task("digits@image")
    assert img.name == "digits@image" and img.input_shape == (1, 8, 8)
    assert img.x_train.shape == (1437, 1, 8, 8)
    assert torch.equal(img.x_train.reshape(1437, 64), flat.x_train)
    assert torch.equal(img.y_test, flat.y_test)
    assert get_task("digits@flat") is flat


def test_subset_task_remaps_labels_in_sorted_order():
    parent = get_task("digits")
    t = get_task("digits:9-3-5-0-7")  # unsorted spelling -> canonical name
    assert t.name == "digits:0-3-5-7-9" and t is get_task("digits:0-3-5-7-9")
    assert t.classes == (0, 3, 5, 7, 9) and t.num_classes == 5
    for split in ("train", "test"):
        y_parent = getattr(parent, f"y_{split}")
        keep = torch.isin(y_parent, torch.tensor([0, 3, 5, 7, 9]))
        # same images as the parent split restricted to these classes, same order
        assert torch.equal(getattr(t, f"x_{split}"), getattr(parent, f"x_{split}")[keep])
        assert torch.equal(getattr(t, f"index_{split}"), getattr(parent, f"index_{split}")[keep])
        y = getattr(t, f"y_{split}")
        assert sorted(y.unique().tolist()) == [0, 1, 2, 3, 4]
        # smallest digit -> 0, ..., largest -> k-1
        assert torch.equal(torch.tensor(t.classes)[y], y_parent[keep])
    assert len(t.y_train) + len(t.y_test) == 178 + 183 + 182 + 179 + 180
    img = get_task("digits:0-3-5-7-9@image")
    assert img.x_test.shape == (len(t.y_test), 1, 8, 8) and torch.equal(img.y_test, t.y_test)


def test_subset_names():
    five = subset_tasks(5)
    assert len(five) == 252 == math.comb(10, 5) and len(set(five)) == 252
    assert five[0] == "digits:0-1-2-3-4" and five[-1] == "digits:5-6-7-8-9"
    two = subset_tasks(2)
    assert len(two) == 45 and two[0] == "digits:0-1"
    assert subset_tasks(10) == ["digits"]
    assert subset_tasks(3, "digits@image")[0] == "digits:0-1-2@image"
    assert all(get_task(n).name == n for n in two[:3])
    with pytest.raises(WeightSpaceError):
        subset_tasks(1)


@pytest.mark.parametrize(
    "name", ["cifar10", "digits:3", "digits:1-1-2", "digits:0-10", "digits@signal", "mnist1d@image",
             "digits-inr@4", "digits-inr@big", "Digits", ""]
)
def test_unknown_task_names_raise(name):
    with pytest.raises(WeightSpaceError) as err:
        get_task(name)
    assert "valid forms" in str(err.value) and "digits:<d1>-<d2>" in str(err.value)


# --------------------------------------------------------------------------- digits INR
def test_digits_inr_coordinates_and_targets():
    t = get_task("digits-inr")
    parent = get_task("digits")
    assert t.name == "digits-inr" and t.kind == "inr" and t.resolution == 8 and get_task("digits-inr@8") is t
    assert t.coords.shape == (64, 2) and t.coords.dtype == torch.float32
    assert float(t.coords.min()) == -1.0 and float(t.coords.max()) == 1.0
    # (row, col) order, row-major: second point is one column to the right
    assert torch.allclose(t.coords[1] - t.coords[0], torch.tensor([0.0, 2.0 / 7]))
    assert torch.allclose(t.coords[8] - t.coords[0], torch.tensor([2.0 / 7, 0.0]))
    assert t.targets_train.shape == (1437, 64, 1) and t.targets_test.shape == (360, 64, 1)
    assert torch.equal(t.targets_train[..., 0], 2 * parent.x_train - 1)  # [-1, 1] grayscale
    assert torch.equal(t.labels_test, parent.y_test) and torch.equal(t.index_train, parent.index_train)
    assert torch.equal(targets_to_images(t.targets_train, 8), t.images_train)


def test_digits_inr_upsampled_and_subset():
    t = get_task("digits-inr:2-7@16")
    assert t.name == "digits-inr:2-7@16" and t.classes == (2, 7)
    n = int(torch.isin(get_task("digits").y_train, torch.tensor([2, 7])).sum())
    assert t.coords.shape == (256, 2) and t.targets_train.shape == (n, 256, 1)
    assert t.images_train.shape == (n, 8, 8)
    up = targets_to_images(t.targets_train, 16)
    # align_corners: the 4 corner pixels coincide with the source corners
    corners = (slice(None), [0, 0, -1, -1], [0, -1, 0, -1])
    assert torch.allclose(up[corners], t.images_train[corners], atol=1e-6)
    assert float(up.min()) >= 0.0 and float(up.max()) <= 1.0 + 1e-6
    assert torch.allclose(coordinate_grid(16), t.coords)


def test_affine_variants_variant0_is_original_and_deterministic():
    imgs = get_task("digits-inr").images_train[:20]
    g = torch.Generator().manual_seed(0)
    v = affine_variants(imgs, 5, g)
    assert v.shape == (20, 5, 8, 8)
    assert torch.equal(v[:, 0], imgs)
    assert all((v[:, k] - imgs).abs().amax() > 0.05 for k in range(1, 5))  # real warps
    v2 = affine_variants(imgs, 5, torch.Generator().manual_seed(0))
    assert torch.equal(v, v2)
    up, params = affine_variants(imgs, 3, g, resolution=16, return_params=True)
    assert up.shape == (20, 3, 16, 16)
    assert params["rotation"].abs().max() <= 15 and params["translation"].abs().max() <= 1
    assert ((params["scale"] >= 0.9) & (params["scale"] <= 1.1)).all()
    assert (params["rotation"][:, 0] == 0).all() and (params["scale"][:, 0] == 1).all()


def test_affine_translation_moves_content_by_the_drawn_shift():
    # a blob away from the border: bilinear shifts move its centroid exactly
    img = torch.zeros(1, 12, 12)
    img[0, 4:7, 5:8] = torch.tensor([[0.2, 0.5, 0.1], [0.7, 1.0, 0.3], [0.4, 0.6, 0.2]])
    out, p = affine_variants(img, 6, torch.Generator().manual_seed(3), max_rotation=0.0, scale_range=(1.0, 1.0),
                             max_translation=1.5, return_params=True)
    rows = torch.arange(12.0).reshape(1, 1, 12, 1)
    cols = torch.arange(12.0).reshape(1, 1, 1, 12)
    mass = out.sum((-1, -2))
    cx = (out * cols).sum((-1, -2)) / mass
    cy = (out * rows).sum((-1, -2)) / mass
    assert torch.allclose(mass, img.sum().expand_as(mass), atol=1e-5)
    assert torch.allclose(cx - cx[:, :1], p["translation"][..., 0], atol=1e-4)
    assert torch.allclose(cy - cy[:, :1], p["translation"][..., 1], atol=1e-4)


def test_affine_rotation_direction():
    img = torch.zeros(1, 15, 15)
    img[0, 7, 11] = 1.0  # 4 px right of the centre
    out, p = affine_variants(img, 5, torch.Generator().manual_seed(1), max_rotation=40.0, scale_range=(1.0, 1.0),
                             max_translation=0.0, return_params=True)
    pos = torch.arange(15.0) - 7
    mass = out.sum((-1, -2))
    dy = (out * pos.reshape(15, 1)).sum((-1, -2)) / mass
    dx = (out * pos.reshape(1, 15)).sum((-1, -2)) / mass
    a = torch.deg2rad(p["rotation"])
    assert torch.allclose(dy, 4 * torch.sin(a), atol=0.1) and torch.allclose(dx, 4 * torch.cos(a), atol=0.3)
    assert (p["rotation"][0, 1:].abs() > 1).all()


def test_affine_variants_rejects_bad_input():
    with pytest.raises(WeightSpaceError):
        affine_variants(torch.zeros(2, 8, 6), 2)
    with pytest.raises(WeightSpaceError):
        affine_variants(torch.zeros(2, 8, 8), 0)


# --------------------------------------------------------------------------- MNIST-1D
def test_mnist1d_shapes_and_determinism():
    t = get_task("mnist1d")
    assert t.x_train.shape == (4000, 40) and t.x_test.shape == (1000, 40)
    assert t.x_train.dtype == torch.float32 and t.num_classes == 10
    s = get_task("mnist1d@signal")
    assert s.x_train.shape == (4000, 1, 40) and torch.equal(s.x_train[:, 0], t.x_train)
    # standardized over the whole set, 500 samples of each class in all
    x_all = torch.cat([t.x_train, t.x_test]).double()
    assert abs(float(x_all.mean())) < 1e-5 and abs(float(x_all.std()) - 1) < 1e-3
    assert torch.bincount(torch.cat([t.y_train, t.y_test])).tolist() == [500] * 10
    again = tasks.mnist1d_arrays()
    assert np.array_equal(again["x"].astype(np.float32), t.x_train.numpy())
    assert np.array_equal(again["y_test"], t.y_test.numpy())
    other = tasks.mnist1d_arrays(seed=1)
    assert not np.allclose(other["x"], again["x"])


def test_mnist1d_matches_reference_package_if_installed():
    ref = pytest.importorskip("mnist1d.data")
    d = ref.make_dataset()
    t = get_task("mnist1d")
    assert np.allclose(d["x"], t.x_train.numpy(), atol=1e-5) and np.array_equal(d["y_test"], t.y_test.numpy())


def test_mnist1d_is_learnable_above_chance():
    from sklearn.linear_model import LogisticRegression

    from wspace.families import MLPClassifier

    t = get_task("mnist1d")
    logreg = LogisticRegression(max_iter=500).fit(t.x_train.numpy(), t.y_train.numpy())
    acc_lin = logreg.score(t.x_test.numpy(), t.y_test.numpy())
    assert 0.25 < acc_lin < 0.5  # published: ~32% for logistic regression

    torch.manual_seed(0)
    model = MLPClassifier(40, (100, 100), 10)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matmuls: threading only adds contention
    try:
        for _ in range(300):
            idx = torch.randint(0, len(t.y_train), (128,), generator=g)
            loss = torch.nn.functional.cross_entropy(model(t.x_train[idx]), t.y_train[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    finally:
        torch.set_num_threads(threads)
    with torch.no_grad():
        acc_mlp = (model(t.x_test).argmax(1) == t.y_test).float().mean().item()
    assert acc_mlp > 0.5 and acc_mlp > acc_lin + 0.15  # published MLP: ~68% after full training


def test_task_meta_is_json():
    import json

    meta = get_task("digits:0-1").meta()
    assert json.loads(json.dumps(meta))["n_test"] == int(torch.bincount(get_task("digits").y_test)[:2].sum())
    inr = get_task("digits-inr").meta()
    assert inr["resolution"] == 8 and inr["value_range"] == [-1.0, 1.0]
