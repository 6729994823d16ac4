import pickle

import numpy as np
import pytest
import torch

from nets import make
from wspace import WeightSpace, WeightSpaceError
from wspace.io import (
    atomic_write, load_safetensors, load_state_dict, load_weight_space, save_safetensors, save_weight_space,
    validate_state_dict,
)


@pytest.fixture
def mlp():
    mods, x = make("mlp", 3)
    return mods, WeightSpace.from_modules(mods)


def test_safetensors_round_trip_with_metadata(tmp_path, mlp):
    mods, ws = mlp
    path = tmp_path / "w.safetensors"
    save_safetensors(path, mods[0].state_dict(), {"epoch": 3})
    sd, meta = load_safetensors(path)
    assert meta == {"epoch": "3"}
    assert all(torch.equal(sd[k], v) for k, v in mods[0].state_dict().items())
    assert not list(tmp_path.glob(".*tmp"))  # no temp file left behind


def test_weight_space_file_round_trip(tmp_path, mlp):
    _, ws = mlp
    save_weight_space(ws, tmp_path / "ws.safetensors", {"note": "x"})
    back = load_weight_space(tmp_path / "ws.safetensors")
    assert back.spec == ws.spec
    assert all(torch.equal(a, b) for a, b in zip(ws.tensors, back.tensors))


def test_pt_loaded_with_weights_only(tmp_path, mlp):
    mods, ws = mlp
    torch.save(mods[0].state_dict(), tmp_path / "a.pt")
    sd = load_state_dict(tmp_path / "a.pt", spec=ws.spec)
    assert all(torch.equal(sd[k], v) for k, v in mods[0].state_dict().items())
    torch.save({"state_dict": mods[1].state_dict()}, tmp_path / "b.pth")
    assert set(load_state_dict(tmp_path / "b.pth")) == set(ws.spec.keys)


class Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_arbitrary_pickle_is_refused(tmp_path, capsys):
    path = tmp_path / "evil.pt"
    with open(path, "wb") as f:
        pickle.dump({"0.weight": Evil()}, f)
    with pytest.raises(WeightSpaceError, match="evil.pt") as e:
        load_state_dict(path)
    assert "pwned" not in capsys.readouterr().out
    assert "refused" in str(e.value) or "corrupt" in str(e.value)


def test_non_tensor_values_are_refused(tmp_path):
    torch.save({"0.weight": torch.zeros(2), "meta": 3}, tmp_path / "m.pt")
    with pytest.raises(WeightSpaceError, match="'meta'"):
        load_state_dict(tmp_path / "m.pt")


@pytest.mark.parametrize("ext", [".safetensors", ".pt"])
def test_truncated_files_name_the_file(tmp_path, mlp, ext):
    mods, _ = mlp
    path = tmp_path / f"t{ext}"
    if ext == ".pt":
        torch.save(mods[0].state_dict(), path)
    else:
        save_safetensors(path, mods[0].state_dict())
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightSpaceError, match=f"t{ext}"):
        load_state_dict(path)


def test_garbage_header(tmp_path):
    path = tmp_path / "g.safetensors"
    path.write_bytes(b"\x05\x00\x00\x00\x00\x00\x00\x00{nope")
    with pytest.raises(WeightSpaceError, match="g.safetensors"):
        load_state_dict(path)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_values_name_the_tensor(tmp_path, mlp, bad):
    mods, _ = mlp
    sd = dict(mods[0].state_dict())
    sd["2.weight"] = sd["2.weight"].clone()
    sd["2.weight"][3, 4] = bad
    save_safetensors(tmp_path / "n.safetensors", sd)
    with pytest.raises(WeightSpaceError, match=r"n\.safetensors.*2\.weight.*non-finite"):
        load_state_dict(tmp_path / "n.safetensors")


def test_spec_validation_errors(tmp_path, mlp):
    mods, ws = mlp
    sd = dict(mods[0].state_dict())
    with pytest.raises(WeightSpaceError, match="missing.*4.bias"):
        validate_state_dict({k: v for k, v in sd.items() if k != "4.bias"}, ws.spec, "f.pt")
    with pytest.raises(WeightSpaceError, match="unexpected.*extra"):
        validate_state_dict(dict(sd, extra=torch.zeros(1)), ws.spec, "f.pt")
    with pytest.raises(WeightSpaceError, match=r"'f.pt'.*'2.weight'.*shape"):
        validate_state_dict(dict(sd, **{"2.weight": torch.zeros(3, 3)}), ws.spec, "f.pt")


def test_atomic_write_keeps_old_file_on_failure(tmp_path):
    path = tmp_path / "m.json"
    path.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_write(path) as f:
            f.write("partial")
            raise RuntimeError("killed")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]
    with atomic_write(path) as f:
        f.write("new")
    assert path.read_text() == "new"


def test_unknown_extension_and_missing_file(tmp_path):
    (tmp_path / "w.npz").write_bytes(b"x")
    with pytest.raises(WeightSpaceError, match="extension"):
        load_state_dict(tmp_path / "w.npz")
    with pytest.raises(WeightSpaceError, match="not found"):
        load_state_dict(tmp_path / "nope.safetensors")


def test_read_json_names_the_file_for_missing_and_invalid_files(tmp_path):
    from wspace.io import read_json

    good = tmp_path / "a.json"
    good.write_text('{"x": 1}')
    assert read_json(good) == {"x": 1}
    with pytest.raises(WeightSpaceError, match="no such thing") as e:
        read_json(tmp_path / "missing.json", missing="no such thing")
    assert "missing.json" in str(e.value)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(WeightSpaceError, match="invalid JSON") as e:
        read_json(bad)
    assert "bad.json" in str(e.value)


def test_safetensors_header_without_reading_data(tmp_path, mlp):
    from wspace.io import SAFETENSORS_DTYPES, read_safetensors_header, read_safetensors_metadata, read_torch_state_dict

    mods, ws = mlp
    path = tmp_path / "ws.safetensors"
    save_weight_space(ws, path, {"note": "x"})
    info, meta, start = read_safetensors_header(path)
    assert meta == read_safetensors_metadata(path) and meta["note"] == "x"
    assert set(info) == set(ws.spec.keys)
    raw = path.read_bytes()
    for p, t in zip(ws.spec.params, ws.tensors):
        d = info[p.key]
        assert tuple(d["shape"]) == tuple(t.shape)
        b, e = d["data_offsets"]
        arr = np.frombuffer(raw[start + b:start + e], dtype=SAFETENSORS_DTYPES[d["dtype"]]).reshape(t.shape)
        assert torch.equal(torch.from_numpy(arr.copy()), t)
    # a header whose offsets do not fit the file is refused, naming it
    path.write_bytes(raw[:-4])
    with pytest.raises(WeightSpaceError, match="truncated"):
        read_safetensors_header(path)
    # torch pickles without a known extension: the same safe loader
    torch.save(mods[0].state_dict(), tmp_path / "checkpoint")
    sd = read_torch_state_dict(tmp_path / "checkpoint")
    assert all(torch.equal(sd[k], v) for k, v in mods[0].state_dict().items())
