"""Bad inputs: every one is a named :class:`wspace.WeightSpaceError` and changes nothing on disk.

Two parts:

* :data:`CASES`, a table of hostile or mistaken inputs (zoo files that disagree with each
  other, corrupt headers and checkpoints, bad command-line values). Each case builds what it
  needs under a temporary folder and returns the call to make and a pattern its message must
  match (the file or option, and the problem). The test also snapshots the folder before the
  call and checks that nothing already written changed. A new loader or command joins the
  table with one entry.
* a seeded fuzz test (hypothesis) over manifest rows, ``zoo.json`` documents and safetensors
  headers: whatever the bytes, only ``WeightSpaceError`` may come out (never another
  exception type, never a crash).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pytest
import torch
from torch import nn

from datasets_zoo.format import ZooWriter
from datasets_zoo.zoo import Zoo
from wspace import WeightSpace, WeightSpaceError
from wspace.commands import cli
from wspace.io import atomic_write, load_safetensors, load_weight_space, read_safetensors_header, save_safetensors

# --------------------------------------------------------------------------- fixtures


def _mlp(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3))


def make_zoo(path: Path, shards: int = 2, per_shard: int = 3) -> Path:
    """A small native zoo: ``shards`` shards of ``per_shard`` MLPs each."""
    with ZooWriter(path, meta={"tasks": {}}) as w:
        for s in range(shards):
            ws = WeightSpace.from_modules([_mlp(10 * s + i) for i in range(per_shard)])
            w.append(ws, [{"id": f"m{s}-{i}", "run": s, "seed": i} for i in range(per_shard)])
    return path


def _manifest_rows(zoo: Path) -> list[dict]:
    return [json.loads(line) for line in (zoo / "manifest.jsonl").read_text().splitlines()]


def _write_rows(zoo: Path, rows: list[dict]) -> None:
    (zoo / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def _header_file(path: Path, header: Any, data: bytes = b"") -> Path:
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data)
    return path


def snapshot(root: Path) -> dict[str, tuple[int, str]]:
    """Every file under ``root``: (mtime_ns, sha256)."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file():
            out[str(p.relative_to(root))] = (p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
    return out


# --------------------------------------------------------------------------- the table
@dataclass
class Case:
    """``setup(root) -> call``; ``call()`` must raise a WeightSpaceError matching ``match``
    (a CLI call must exit 1 with ``wspace <cmd>: error: `` and the pattern on stderr)."""

    id: str
    setup: Callable[[Path], Callable[[], Any]]
    match: str
    cli: bool = False


def _shard_escape(root: Path) -> Callable[[], Any]:
    z = make_zoo(root / "zoo")
    shutil.copy(z / "shards" / "shard-00000.safetensors", root / "elsewhere.safetensors")
    rows = _manifest_rows(z)
    rows[0]["shard"] = "../../elsewhere.safetensors"
    _write_rows(z, rows)
    return lambda: Zoo.open(z).weights()


def _shard_absolute(root: Path) -> Callable[[], Any]:
    z = make_zoo(root / "zoo")
    rows = _manifest_rows(z)
    rows[1]["shard"] = str((z / "shards" / "shard-00000.safetensors").resolve())
    _write_rows(z, rows)
    return lambda: Zoo.open(z).weights()


def _swapped_shards(root: Path) -> Callable[[], Any]:
    z = make_zoo(root / "zoo")
    a, b = z / "shards" / "shard-00000.safetensors", z / "shards" / "shard-00001.safetensors"
    tmp = z / "shards" / "swap"
    os.rename(a, tmp)
    os.rename(b, a)
    os.rename(tmp, b)
    return lambda: Zoo.open(z).weights()


def _zoo_json_truncated(root: Path) -> Callable[[], Any]:
    z = make_zoo(root / "zoo")
    text = (z / "zoo.json").read_bytes()
    (z / "zoo.json").write_bytes(text[: len(text) // 2])
    return lambda: Zoo.open(z)


def _zoo_json_not_utf8(root: Path) -> Callable[[], Any]:
    z = make_zoo(root / "zoo")
    (z / "zoo.json").write_bytes(b'{"format": "wspace.zoo", "x": "\xff\xfe"}')
    return lambda: Zoo.open(z)


def _zoo_json_deeply_nested(root: Path) -> Callable[[], Any]:
    z = make_zoo(root / "zoo")
    (z / "zoo.json").write_text("[" * 100_000)
    return lambda: Zoo.open(z)


def _row_not_int(root: Path) -> Callable[[], Any]:
    z = make_zoo(root / "zoo")
    rows = _manifest_rows(z)
    rows[2]["row"] = "zero"
    _write_rows(z, rows)
    return lambda: Zoo.open(z)


def _row_out_of_range(root: Path) -> Callable[[], Any]:
    z = make_zoo(root / "zoo")
    rows = _manifest_rows(z)
    rows[2]["row"] = 7
    _write_rows(z, rows)
    return lambda: Zoo.open(z).weights()


def _load_directory(root: Path) -> Callable[[], Any]:
    (root / "d.safetensors").mkdir()
    return lambda: load_weight_space(root / "d.safetensors")


def _header_list(root: Path) -> Callable[[], Any]:
    f = _header_file(root / "list.safetensors", [1, 2, 3])
    return lambda: load_weight_space(f)


def _header_bad_metadata(root: Path) -> Callable[[], Any]:
    f = _header_file(root / "meta.safetensors", {"__metadata__": {"wspace.spec": 3}})
    return lambda: load_safetensors(f)


def _header_negative_offsets(root: Path) -> Callable[[], Any]:
    f = _header_file(root / "neg.safetensors", {"w": {"dtype": "F32", "shape": [-1], "data_offsets": [0, -4]}})
    return lambda: read_safetensors_header(f)


def _bad_spec_metadata(root: Path) -> Callable[[], Any]:
    f = _header_file(root / "spec.safetensors", {"__metadata__": {"wspace.spec": "[1, 2]"}})
    return lambda: load_weight_space(f)


def _truncated_ckpt(root: Path) -> Callable[[], Any]:
    from wspace.checkpoints import check_checkpoint

    f = root / "last.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(100)}, "global_step": 3}, f)
    f.write_bytes(f.read_bytes()[:-40])
    return lambda: check_checkpoint(f)


def _garbage_ckpt(root: Path) -> Callable[[], Any]:
    from wspace.checkpoints import check_checkpoint

    f = root / "last.ckpt"
    f.write_bytes(b"PK\x03\x04 not a zip at all")
    return lambda: check_checkpoint(f)


def _ckpt_without_state(root: Path) -> Callable[[], Any]:
    from wspace.checkpoints import check_checkpoint

    f = root / "last.ckpt"
    torch.save([1, 2, 3], f)
    return lambda: check_checkpoint(f)


def _audit_empty(root: Path) -> Callable[[], Any]:
    from wspace.audit import audit

    ws = WeightSpace.from_modules([_mlp(i) for i in range(3)])
    return lambda: audit(ws[:0], ws)


def _corrupt_record(root: Path) -> Callable[[], Any]:
    from wspace.fingerprint import settle

    (root / "fingerprints").mkdir()
    (root / "fingerprints" / "train.json").write_text('{"fingerprint": 3}')
    (root / "metrics.json").write_text("{}")
    return lambda: settle(root, "train", {"a": 1}, ["metrics.json"], what="the run")


def _cli(*args: str) -> Callable[[Path], Callable[[], Any]]:
    """A command-line case: ``{root}`` in the arguments is the case's folder."""
    def setup(root: Path) -> Callable[[], Any]:
        (root / "a-file").write_text("not a directory")
        return lambda: cli.main([a.replace("{root}", str(root)) for a in args])
    return setup


TRAIN = ("train", "task=generalization", "encoder=statnn", "zoo={root}/no-zoo", "out={root}/run")
GEN = ("train", "generator=d2nwg", "zoo={root}/no-zoo", "out={root}/run")
SAMPLE = ("sample", "checkpoint={root}/no-checkpoint", "task=digits:0-1-2-3-4", "out={root}/samples")
BUILD = ("zoo", "build", "zoo=digits-cnn", "size=small", "out={root}/zoo", "progress=false")

CASES = [
    # zoo files checked against each other
    Case("manifest-shard-outside-zoo", _shard_escape, r"manifest\.jsonl.*line 1: 'shard' .*not a plain file name"),
    Case("manifest-shard-absolute", _shard_absolute, r"manifest\.jsonl.*line 2: 'shard' .*not a plain file name"),
    Case("shards-swapped", _swapped_shards, r"shard-0000[01]\.safetensors.*holds checkpoint 'm[01]-0'.*swapped"),
    Case("zoo-json-truncated", _zoo_json_truncated, r"zoo\.json.*corrupt native zoo description"),
    Case("zoo-json-not-utf8", _zoo_json_not_utf8, r"zoo\.json.*corrupt native zoo description"),
    Case("zoo-json-deeply-nested", _zoo_json_deeply_nested, r"zoo\.json.*corrupt native zoo description"),
    Case("manifest-row-not-integer", _row_not_int, r"manifest\.jsonl.*line 3: 'row' must be a non-negative integer"),
    Case("manifest-row-out-of-range", _row_out_of_range, r"shard-00000\.safetensors.*row index 7 is out of range"),
    # single files
    Case("load-directory", _load_directory, r"d\.safetensors.*is a directory"),
    Case("header-json-list", _header_list, r"list\.safetensors.*a JSON list, not an object"),
    Case("header-metadata-not-strings", _header_bad_metadata, r"meta\.safetensors.*__metadata__ must map strings"),
    Case("header-negative-offsets", _header_negative_offsets, r"neg\.safetensors.*tensor 'w'.*data_offsets"),
    Case("spec-metadata-not-a-spec", _bad_spec_metadata, r"spec\.safetensors.*invalid spec in the metadata"),
    Case("checkpoint-truncated", _truncated_ckpt, r"last\.ckpt.*corrupt or truncated checkpoint.*overwrite=true"),
    Case("checkpoint-garbage", _garbage_ckpt, r"last\.ckpt.*corrupt or truncated checkpoint"),
    Case("checkpoint-not-lightning", _ckpt_without_state, r"last\.ckpt.*not a Lightning checkpoint"),
    Case("fingerprint-record-corrupt", _corrupt_record, r"train\.json.*corrupt fingerprint record"),
    Case("audit-empty-generated", _audit_empty, r"generated set is empty"),
    # command-line values: named errors before any work
    Case("train-seed-not-int", _cli(*TRAIN, "seed=abc"), r"option seed='abc': must be an integer", cli=True),
    Case("train-max-epochs-not-int", _cli(*TRAIN, "trainer.max_epochs=abc"),
         r"option trainer\.max_epochs='abc': must be an integer or null", cli=True),
    Case("train-batch-size-zero", _cli(*TRAIN, "task.batch_size=0"), r"option task\.batch_size=0: must be at least 1",
         cli=True),
    Case("train-lr-nan", _cli(*TRAIN, "task.lr=nan"), r"option task\.lr=nan: must be a finite number", cli=True),
    Case("train-unknown-encoder-option", _cli(*TRAIN, "+encoder.widht=3"),
         r"option encoder\.widht: encoder StatNN has no option 'widht'", cli=True),
    Case("train-unknown-trainer-argument", _cli(*TRAIN, "+trainer.max_epoch=3"),
         r"option trainer\.max_epoch: lightning\.Trainer has no argument", cli=True),
    Case("train-out-is-a-file", _cli(*TRAIN[:-1], "out={root}/a-file"), r"a-file.*option out=.*is an existing file",
         cli=True),
    Case("train-resume-typo", _cli(*TRAIN, "resume=forse"), r"option resume='forse': must be one of", cli=True),
    Case("generator-negative-steps", _cli(*GEN, "generator.vae.steps=-3"),
         r"option generator\.vae\.steps=-3: must be at least 1", cli=True),
    Case("generator-steps-not-int", _cli(*GEN, "generator.denoiser.steps=abc"),
         r"option generator\.denoiser\.steps='abc': must be an integer", cli=True),
    Case("generator-chunk-size-negative", _cli(*GEN, "generator.tokenizer.chunk_size=-2"),
         r"option generator\.tokenizer\.chunk_size=-2: must be at least 1", cli=True),
    Case("generator-trainer-max-epochs", _cli(*GEN, "+trainer.max_epochs=3"),
         r"option trainer\.max_epochs: not used by generator training", cli=True),
    Case("sample-n-not-int", _cli(*SAMPLE, "n=abc"), r"option n='abc': must be an integer", cli=True),
    Case("sample-n-zero", _cli(*SAMPLE, "n=0"), r"option n=0: must be at least 1", cli=True),
    Case("sample-guidance-nan", _cli(*SAMPLE, "guidance_scale=nan"),
         r"option guidance_scale=nan: must be a finite number", cli=True),
    Case("sample-zero-steps", _cli(*SAMPLE, "num_inference_steps=0"),
         r"option num_inference_steps=0: must be at least 1", cli=True),
    Case("sample-bad-readout", _cli(*SAMPLE, "readout=lasso"), r"option readout='lasso'", cli=True),
    Case("sample-bad-sampler", _cli(*SAMPLE, "sampler=euler"), r"option sampler='euler'", cli=True),
    Case("sample-out-is-a-file", _cli(*SAMPLE[:-1], "out={root}/a-file"), r"a-file.*is an existing file", cli=True),
    Case("zoo-build-chunk-size-negative", _cli(*BUILD, "chunk_size=-2"), r"option chunk_size=-2: must be at least 1",
         cli=True),
    Case("zoo-build-override-wrong-type", _cli(*BUILD, "zoo.epochs=abc"), r"option zoo\.epochs='abc': must be an integer",
         cli=True),
    Case("zoo-build-override-not-positive", _cli(*BUILD, "zoo.search.runs=0"),
         r"option zoo\.search\.runs=0: must be at least 1", cli=True),
    Case("zoo-build-size-typo", _cli(*BUILD[:3], "size=smal", *BUILD[4:]), r"option size='smal': must be one of",
         cli=True),
    Case("audit-negative-keep", _cli("audit", "generated={root}/g", "zoo={root}/z", "out={root}/a", "keep=-1"),
         r"option keep=-1: must be at least 1", cli=True),
]
if not torch.cuda.is_available():
    CASES.append(Case("device-cuda-without-gpu", _cli(*SAMPLE, "device=cuda"),
                      r"option device='cuda': CUDA is not available", cli=True))


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_a_named_error_and_changes_nothing(case: Case, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    root = tmp_path / "case"
    root.mkdir()
    call = case.setup(root)
    before = snapshot(root)
    if case.cli:
        with pytest.raises(SystemExit) as exc:
            call()
        err = capsys.readouterr().err
        assert exc.value.code == 1, err
        assert "error: " in err and "Traceback" not in err, err
        assert __import__("re").search(case.match, err), err
        assert len(err.strip().splitlines()) == 1, err  # one line, no traceback
    else:
        with pytest.raises(WeightSpaceError, match=case.match):
            call()
    assert snapshot(root) == before  # nothing already written changed, nothing new appeared


# --------------------------------------------------------------------------- related behaviour
def test_zoo_json_of_another_format_is_not_taken_for_a_native_zoo(tmp_path):
    from datasets_zoo.format import is_native_zoo

    z = make_zoo(tmp_path / "zoo")
    assert is_native_zoo(z)
    (z / "zoo.json").write_text(json.dumps({"format": "someone-else"}))
    assert not is_native_zoo(z)
    (z / "zoo.json").write_bytes(b"\xff")
    assert is_native_zoo(z)  # ours, damaged: reported as such when opened


def test_shards_with_matching_ids_still_read(tmp_path):
    z = make_zoo(tmp_path / "zoo")
    zoo = Zoo.open(z)
    ws = zoo.weights()
    assert len(ws) == 6 and [r["id"] for r in zoo.records][:2] == ["m0-0", "m0-1"]


def test_zoo_build_overrides_win_over_the_size_block(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "zoo"
    # sizes.small says seeds 2, epochs 2, save_epochs [1, 2]: the command line wins
    assert cli.main(["zoo", "build", "zoo=digits-tasks", "size=small", "zoo.search.seeds=1", "zoo.epochs=1",
                     "zoo.save_epochs=[1]", f"out={out}", "progress=false"]) == 0
    zoo = Zoo.open(out)
    built = zoo.meta["builder"]["config"]
    assert (built["search"]["seeds"], built["epochs"], built["save_epochs"]) == (1, 1, [1])
    assert built["batch_size"] == 128 and len(zoo) == 4  # the small size's other settings: 4 tasks x 1 seed


def test_sample_failure_leaves_no_zoo_and_the_rerun_works(tmp_path):
    from wspace.commands.sample import write_samples

    ws = WeightSpace.from_modules([nn.Sequential(nn.Linear(64, 8), nn.ReLU(), nn.Linear(8, 5)) for _ in range(2)])
    bad = ws.map(lambda t: t * float("nan"))
    out = tmp_path / "samples"
    with pytest.raises(WeightSpaceError, match="non-finite weights"):
        write_samples(bad, "digits:0-1-2-3-4", out, {}, {}, 0)
    assert not out.exists() and not list(tmp_path.iterdir())  # no empty zoo, no temporary folder
    write_samples(ws, "digits:0-1-2-3-4", out, {}, {}, 0)
    assert len(Zoo.open(out)) == 2
    with pytest.raises(WeightSpaceError, match="a zoo already exists here"):
        write_samples(ws, "digits:0-1-2-3-4", out, {}, {}, 0)


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_files_are_written_with_the_process_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        with atomic_write(tmp_path / "a.json") as f:
            f.write("{}")
        save_safetensors(tmp_path / "b.safetensors", {"w": torch.zeros(2)})
        z = make_zoo(tmp_path / "zoo", shards=1)
    finally:
        os.umask(old)
    want = 0o666 & ~umask
    files = [tmp_path / "a.json", tmp_path / "b.safetensors", z / "zoo.json", z / "manifest.jsonl",
             z / "shards" / "shard-00000.safetensors"]
    assert {f.name: oct(f.stat().st_mode & 0o777) for f in files} == {f.name: oct(want) for f in files}


# --------------------------------------------------------------------------- fuzz
hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
FUZZ = settings(max_examples=150, derandomize=True, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _only_named_errors(fn: Callable[[], Any]) -> None:
    try:
        fn()
    except WeightSpaceError:
        pass
    # any other exception type fails the test, with hypothesis's minimal example


@pytest.fixture(scope="module")
def template_zoo(tmp_path_factory) -> Path:
    return make_zoo(tmp_path_factory.mktemp("fuzz") / "zoo")


def _open_and_read(z: Path) -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        zoo = Zoo.open(z)
        if len(zoo):
            for sid in zoo.spec_ids:
                zoo.filter(spec_id=sid).weights()


@FUZZ
@given(line=st.integers(0, 5), field=st.sampled_from(["id", "spec_id", "shard", "row", "task", "hparams", None]),
       value=JSON, raw=st.one_of(st.none(), st.binary(max_size=40)))
def test_fuzz_manifest_rows(template_zoo, line, field, value, raw):
    with tempfile.TemporaryDirectory() as d:
        z = Path(d) / "zoo"
        shutil.copytree(template_zoo, z)
        lines = (z / "manifest.jsonl").read_bytes().splitlines(keepends=True)
        if raw is not None:
            lines[line] = raw + b"\n"
        else:
            row = json.loads(lines[line])
            if field is None:
                row = value
            else:
                row[field] = value
            lines[line] = json.dumps(row).encode() + b"\n"
        (z / "manifest.jsonl").write_bytes(b"".join(lines))
        _only_named_errors(lambda: _open_and_read(z))


@FUZZ
@given(path=st.sampled_from([(), ("format_version",), ("specs",), ("specs", 0), ("specs", 0, "id"),
                             ("specs", 0, "spec"), ("specs", 0, "spec", "params"), ("specs", 0, "spec", "params", 0),
                             ("specs", 0, "spec", "params", 0, "shape"), ("specs", 0, "spec", "program"),
                             ("specs", 0, "spec", "groups"), ("specs", 0, "spec", "in_features"), ("meta",)]),
       value=JSON, cut=st.one_of(st.none(), st.integers(0, 400)))
def test_fuzz_zoo_json(template_zoo, path, value, cut):
    with tempfile.TemporaryDirectory() as d:
        z = Path(d) / "zoo"
        shutil.copytree(template_zoo, z)
        doc = json.loads((z / "zoo.json").read_text())
        if path:
            node = doc
            for k in path[:-1]:
                node = node[k]
            node[path[-1]] = value
        else:
            doc = value
        text = json.dumps(doc).encode()
        if cut is not None:
            text = text[:cut]
        (z / "zoo.json").write_bytes(text)
        _only_named_errors(lambda: _open_and_read(z))


@FUZZ
@given(entry=st.sampled_from([None, "dtype", "shape", "data_offsets", "__metadata__", "spec"]), value=JSON,
       header_len=st.one_of(st.none(), st.integers(0, 2**64 - 1)), data=st.binary(max_size=64),
       trailing=st.integers(-8, 8))
def test_fuzz_safetensors_headers(tmp_path_factory, entry, value, header_len, data, trailing):
    ws = WeightSpace.from_modules([_mlp(0), _mlp(1)])
    with tempfile.TemporaryDirectory() as d:
        good = Path(d) / "good.safetensors"
        from wspace.io import save_weight_space

        save_weight_space(ws, good)
        raw = good.read_bytes()
        n = struct.unpack("<Q", raw[:8])[0]
        header = json.loads(raw[8:8 + n])
        body = raw[8 + n:]
        key = next(k for k in header if k != "__metadata__")
        if entry == "__metadata__":
            header["__metadata__"] = value
        elif entry == "spec":
            header["__metadata__"]["wspace.spec"] = json.dumps(value)
        elif entry is None:
            header = value
        else:
            header[key][entry] = value
        text = json.dumps(header).encode()
        head = struct.pack("<Q", len(text) if header_len is None else header_len)
        blob = head + text + (body if trailing >= 0 else body[:trailing]) + data[:max(0, trailing)]
        f = Path(d) / "fuzz.safetensors"
        f.write_bytes(blob)
        for fn in (read_safetensors_header, load_safetensors, load_weight_space):
            _only_named_errors(lambda: fn(f))
