"""Run fingerprints: a rerun never reuses a result trained with other settings.

``wspace train`` (encoders) and every stage of every generator record what determines their
result; a rerun with another learning rate, seed, zoo or step count refuses before any work,
naming what differs, and leaves every file as it was; ``resume=force`` continues anyway (and
says so), ``overwrite=true`` discards what is stale and starts it over.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from wspace import WeightSpaceError
from wspace.commands import cli
from wspace.fingerprint import RerunPolicy, differences, read_record, record_path, rerun_policy, settle


def snapshot(root: Path) -> dict[str, tuple[int, str]]:
    return {str(p.relative_to(root)): (p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
            for p in sorted(root.rglob("*")) if p.is_file()}


# --------------------------------------------------------------------------- the mechanism
def test_settle_fresh_resume_refuse_force_overwrite(tmp_path):
    a = {"lr": 0.001, "seed": 0, "nested": {"steps": 400}}
    b = {"lr": 0.05, "seed": 0, "nested": {"steps": 400}}
    assert settle(tmp_path, "s", a, ["result.bin"], what="the stage") == "fresh"  # nothing there yet
    (tmp_path / "result.bin").write_bytes(b"old")
    assert settle(tmp_path, "s", a, ["result.bin"], what="the stage") == "resume"
    before = snapshot(tmp_path)
    with pytest.raises(WeightSpaceError) as e:
        settle(tmp_path, "s", b, ["result.bin"], what="the stage")
    msg = str(e.value)
    assert "the stage" in msg and "lr: 0.001 -> 0.05" in msg and "seed" not in msg.split("settings:")[1]
    assert "new out=" in msg and "resume=force" in msg and "overwrite=true" in msg and "s.json" in msg
    assert snapshot(tmp_path) == before  # the refusal wrote nothing
    assert settle(tmp_path, "s", b, ["result.bin"], what="x", policy=RerunPolicy("force")) == "forced"
    rec = read_record(record_path(tmp_path, "s"))
    assert rec["settings"] == b and rec["forced"] == ["lr: 0.001 -> 0.05"]
    assert (tmp_path / "result.bin").read_bytes() == b"old"
    with rerun_policy(overwrite=True):
        assert settle(tmp_path, "s", a, ["result.bin"], what="x") == "fresh"
    assert not (tmp_path / "result.bin").exists()  # overwrite deleted the stale result


def test_results_without_a_record_are_refused(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    with pytest.raises(WeightSpaceError, match="no fingerprint record"):
        settle(tmp_path, "train", {"a": 1}, ["checkpoints"], what="the run")


def test_policy_parsing_and_differences():
    assert RerunPolicy.parse("Force", "false") == RerunPolicy("force", False)
    assert RerunPolicy.parse(False).discard
    with pytest.raises(WeightSpaceError, match="resume must be"):
        RerunPolicy.parse("sometimes")
    with pytest.raises(WeightSpaceError, match="contradict"):
        RerunPolicy.parse("force", True)
    assert differences({"a": {"b": 1}, "c": 2}, {"a": {"b": 2}, "d": 3}) == [
        "a.b: 1 -> 2", "c: 2 -> (not set)", "d: (not set) -> 3"]


# --------------------------------------------------------------------------- zoos
@pytest.fixture(scope="module")
def zoos(tmp_path_factory):
    from datasets_zoo.build import build_zoo

    root = tmp_path_factory.mktemp("fp")
    a = build_zoo("digits-tasks", root / "a", size="small", progress=False)
    b = build_zoo("digits-tasks", root / "b", size="small", seed=1, progress=False)
    return Path(a), Path(b)


def test_zoo_fingerprint_follows_content_not_path(zoos, tmp_path):
    import shutil

    from datasets_zoo import Zoo
    from datasets_zoo.source import zoo_fingerprint

    a, b = zoos
    shutil.copytree(a, tmp_path / "moved")
    fa = zoo_fingerprint(Zoo.open(a))
    assert zoo_fingerprint(Zoo.open(tmp_path / "moved")) == fa
    assert zoo_fingerprint(Zoo.open(b)) != fa
    assert zoo_fingerprint(Zoo.open(a).select(range(4))) != fa  # a view is another training set


# --------------------------------------------------------------------------- generators
def test_gaussian_rerun_with_other_settings_or_zoo_refuses(zoos, tmp_path):
    from generators.gaussian import GaussianGenerator

    a, b = zoos
    out = tmp_path / "gauss"
    GaussianGenerator.train(a, out)
    GaussianGenerator.train(a, out)  # same settings: fine
    before = snapshot(out)
    with pytest.raises(WeightSpaceError, match=r"generator\.aligned: False -> True"):
        GaussianGenerator.train(a, out, {"aligned": True})
    with pytest.raises(WeightSpaceError, match=r"zoo fingerprint: "):
        GaussianGenerator.train(b, out)
    assert snapshot(out) == before
    with rerun_policy(overwrite=True):
        pipe = GaussianGenerator.train(a, out, {"aligned": True})
    assert pipe.config["aligned"] is True


def test_gaussian_cli_names_the_option_and_the_ways_on(zoos, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    a, _ = zoos
    args = ["train", "generator=gaussian", f"zoo={a}", f"out={tmp_path / 'g'}"]
    assert cli.main(args) == 0
    with pytest.raises(SystemExit) as e:
        cli.main([*args, "seed=3"])
    err = capsys.readouterr().err
    assert e.value.code == 1 and "seed: 0 -> 3" in err and "resume=force" in err and "overwrite=true" in err
    assert cli.main([*args, "seed=3", "overwrite=true"]) == 0


TINY = dict(vae={"steps": 4, "batch_size": 8, "d_model": 32, "latent_dim": 8},
            condition={"hidden": 16}, denoiser={"steps": 4, "batch_size": 8, "d_model": 32, "depth": 1, "warmup": 1},
            sampling={"num_inference_steps": 3}, checkpoint_every=2)


def test_d2nwg_stages_refuse_other_settings_and_overwrite_keeps_valid_stages(zoos, tmp_path):
    from generators.d2nwg import train_d2nwg
    from generators.pipeline import WeightGenerator

    a, _ = zoos
    out = tmp_path / "d2nwg"
    quiet = {"enable_progress_bar": False}
    train_d2nwg(a, out, trainer=quiet, **TINY)
    vae_file, den_file = out / "stages" / "vae.safetensors", out / "stages" / "denoiser.safetensors"
    before = snapshot(out)
    more = {**TINY, "denoiser": {**TINY["denoiser"], "steps": 6}}
    with pytest.raises(WeightSpaceError) as e:
        train_d2nwg(a, out, trainer=quiet, **more)
    assert "the diffusion stage" in str(e.value) and "generator.denoiser.steps: 4 -> 6" in str(e.value)
    assert snapshot(out) == before  # stage files, checkpoints, pipeline: untouched
    # sampling defaults change no trained weight: not a conflict
    train_d2nwg(a, out, trainer=quiet, **{**TINY, "sampling": {"num_inference_steps": 5}})
    assert WeightGenerator.from_pretrained(out / "pipeline").config["sampling"]["num_inference_steps"] == 5
    # overwrite: the VAE (same settings) is kept, the diffusion retrained with the new steps
    vae_state = (vae_file.stat().st_mtime_ns, vae_file.read_bytes())
    with rerun_policy(overwrite=True):
        train_d2nwg(a, out, trainer=quiet, **more)
    assert (vae_file.stat().st_mtime_ns, vae_file.read_bytes()) == vae_state
    rows = (out / "logs" / "diffusion" / "version_0" / "metrics.csv").read_text().splitlines()[1:]
    assert max(int(r.split(",")[1]) for r in rows) == 5  # steps 0..5: the retrained stage ran 6 steps
    assert WeightGenerator.from_pretrained(out / "pipeline").config["denoiser"]["steps"] == 6
    # another VAE invalidates the diffusion trained on its latents too
    other_vae = {**more, "vae": {**more["vae"], "lr": 0.01}}
    with pytest.raises(WeightSpaceError, match=r"the vae stage.*generator\.vae\.lr: 0\.001 -> 0\.01"):
        train_d2nwg(a, out, trainer=quiet, **other_vae)
    # force: reuse as is, recorded
    with rerun_policy("force"):
        train_d2nwg(a, out, trainer=quiet, **other_vae)
    assert read_record(record_path(out, "vae"))["forced"] == ["generator.vae.lr: 0.001 -> 0.01"]
    assert den_file.is_file()


# --------------------------------------------------------------------------- encoders
def test_train_rerun_refuses_then_force_and_overwrite(zoos, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    a, b = zoos
    out = tmp_path / "run"
    base = ["train", "task=generalization", "encoder=statnn", "encoder.hidden=8", f"out={out}",
            "trainer.max_epochs=1", "trainer.enable_progress_bar=false", "task.batch_size=8",
            "task.split_by=run"]
    assert cli.main([*base, f"zoo={a}"]) == 0
    first = json.loads((out / "metrics.json").read_text())
    before = snapshot(out)
    for change, named in (("task.lr=0.05", "task.lr: 0.001 -> 0.05"), ("seed=1", "seed: 0 -> 1"),
                          (f"zoo={b}", "zoo fingerprint")):
        capsys.readouterr()
        with pytest.raises(SystemExit):
            cli.main([*base, f"zoo={a}", change] if not change.startswith("zoo=") else [*base, change])
        err = capsys.readouterr().err
        assert named in err and "resume=force" in err, err
        assert snapshot(out) == before  # metrics.json, config.yaml and checkpoints keep the first run's
    # the same settings resume; a corrupt last.ckpt is a named error
    last = out / "checkpoints" / "last.ckpt"
    last.write_bytes(last.read_bytes()[:200])
    capsys.readouterr()
    with pytest.raises(SystemExit):
        cli.main([*base, f"zoo={a}"])
    assert "last.ckpt': corrupt or truncated checkpoint" in capsys.readouterr().err
    # overwrite: starts over with the new settings, which metrics.json and config.yaml then report
    assert cli.main([*base, f"zoo={a}", "task.lr=0.05", "overwrite=true"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["resumed_from"] is None and m["fingerprint"] != first["fingerprint"]
    assert "lr: 0.05" in (out / "config.yaml").read_text()
