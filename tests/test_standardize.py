"""wspace.standardize.WeightStats: one per-tensor standardization for zoos read from disk and
networks held in memory."""
import numpy as np
import pytest
import torch

from wspace import WeightSpaceError
from wspace.families import family_spec, init_weight_space
from wspace.standardize import WeightStats


class _ChunkedZoo:
    """The zoo-like source WeightStats.compute reads (spec, path, weights(indices))."""

    def __init__(self, ws):
        self.spec, self.path, self.ws = ws.spec, None, ws

    def weights(self, indices):
        return self.ws[torch.as_tensor(indices)]


def test_from_weights_matches_compute_and_round_trips():
    spec = family_spec("mlp", in_features=4, hidden=(6,), num_classes=3)
    ws = init_weight_space(spec, 9, generator=torch.Generator().manual_seed(0))
    a = WeightStats.from_weights(ws, chunk_size=4)
    b = WeightStats.compute(_ChunkedZoo(ws), np.arange(len(ws)), chunk_size=2)
    assert torch.allclose(a.mean, b.mean, rtol=0, atol=1e-15) and torch.allclose(a.std, b.std, rtol=0, atol=1e-15)
    for t, m, s in zip(ws.tensors, a.mean, a.std):
        assert float(t.double().mean()) == pytest.approx(float(m), abs=1e-12)
        assert float(t.double().std(unbiased=False)) == pytest.approx(float(s), rel=1e-9)
    back = a.denormalize(a.normalize(ws.to(torch.float64)))
    assert all(torch.allclose(x, y.double(), atol=1e-12) for x, y in zip(back.tensors, ws.tensors))
    assert a.count == 9


def test_from_weights_rejects_zero_networks():
    spec = family_spec("mlp", in_features=4, hidden=(6,), num_classes=3)
    with pytest.raises(WeightSpaceError, match="zero networks"):
        WeightStats.from_weights(init_weight_space(spec, 3)[:0])
