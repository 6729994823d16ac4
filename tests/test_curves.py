"""``wspace train`` writes ``curves.png`` beside ``metrics.json``; ``wspace plot <run dir>``
redraws it (issue 22, point 4)."""
from __future__ import annotations

import struct
from pathlib import Path

import pytest

from wspace.commands import cli
from wspace.curves import find_logs, plot_curves, read_curves
from wspace.errors import WeightSpaceError

PNG = b"\x89PNG\r\n\x1a\n"


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) of a valid PNG of reasonable size; fails otherwise."""
    data = path.read_bytes()
    assert data[:8] == PNG and data[12:16] == b"IHDR", f"{path} is not a PNG"
    assert len(data) > 5_000, f"{path} is suspiciously small ({len(data)} bytes)"
    w, h = struct.unpack(">II", data[16:24])
    assert 300 <= w <= 4000 and 200 <= h <= 4000
    return w, h


@pytest.fixture(scope="module")
def zoos(tmp_path_factory):
    from datasets_zoo.build import build_zoo

    root = tmp_path_factory.mktemp("zoos")
    return {"inr": build_zoo("digits-inr", root / "inr", size="small", progress=False),
            "tasks": build_zoo("digits-tasks", root / "tasks", size="small", progress=False)}


def test_train_encoder_writes_curves_and_plot_redraws_them(zoos, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "enc"
    assert cli.main(["train", "task=inr_classification", "encoder=unf", f"zoo={zoos['inr']}", f"out={out}",
                     "trainer.max_epochs=3", "trainer.enable_progress_bar=false", "trainer.log_every_n_steps=1"]) == 0
    assert (out / "metrics.json").is_file()
    curves = out / "curves.png"
    png_size(curves)
    names = {name for _, name in read_curves(out)}
    assert {"loss", "acc"} <= names

    curves.unlink()
    assert cli.main(["plot", str(out)]) == 0  # the positional form
    png_size(curves)
    assert f"wrote {curves}" in capsys.readouterr().out
    other = tmp_path / "elsewhere.png"
    assert cli.main(["plot", f"run={out}", f"out={other}"]) == 0
    png_size(other)


def test_train_generator_writes_curves_per_stage(zoos, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "gen"
    assert cli.main(["train", "generator=d2nwg", f"zoo={zoos['tasks']}", f"out={out}",
                     "trainer.enable_progress_bar=false", "trainer.log_every_n_steps=1",
                     "generator.vae.steps=4", "generator.denoiser.steps=4"]) == 0
    png_size(out / "curves.png")
    assert list(find_logs(out)) == ["vae", "diffusion"]
    assert {g for g, _ in read_curves(out)} == {"vae", "diffusion"}


def test_resumed_runs_are_merged_by_step(tmp_path):
    for v, rows in ((0, ["0,0,1.0,", "0,9,0.8,", "0,10,,0.9"]), (1, ["0,9,0.7,", "1,19,0.5,", "1,20,,0.6"])):
        d = tmp_path / "logs" / f"version_{v}"
        d.mkdir(parents=True)
        (d / "metrics.csv").write_text("epoch,step,train/loss,val/loss\n" + "\n".join(rows) + "\n")
    curves = read_curves(tmp_path)
    assert curves[("", "loss")]["train"] == [(0, 1.0), (9, 0.7), (19, 0.5)]  # the later version wins
    assert curves[("", "loss")]["val"] == [(10, 0.9), (20, 0.6)]
    png_size(plot_curves(tmp_path))


def test_plot_without_logs_names_the_directory(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    empty = tmp_path / "not_a_run"
    empty.mkdir()
    with pytest.raises(WeightSpaceError, match="no training logs"):
        plot_curves(empty)
    with pytest.raises(SystemExit) as exc:
        cli.main(["plot", str(empty)])
    assert exc.value.code == 1
    err = capsys.readouterr().err
    assert "wspace plot: error:" in err and str(empty) in err and "no training logs" in err


def test_plot_positional_argument_is_the_run_even_when_missing(tmp_path, capsys):
    from wspace.commands.plot import translate_args

    assert translate_args(["nowhere"]) == ["run=nowhere"]
    assert translate_args(["d", "--cfg", "job"]) == ["--cfg", "job", "run=d"]  # a flag's value is not the run
    assert translate_args(["run=a", "b=1"]) == ["run=a", "b=1"]
    with pytest.raises(SystemExit) as exc:
        cli.main(["plot", str(tmp_path / "missing")])
    assert exc.value.code == 1
    assert "not a directory" in capsys.readouterr().err
