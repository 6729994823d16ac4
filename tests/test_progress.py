"""Progress that fits where it goes (issue 22, point 2): bars on a terminal, a few whole
lines elsewhere, and known-harmless third-party noise hidden by the CLI only.

The subprocess tests run ``wspace`` with stdout/stderr captured to pipes (not a terminal),
as in a log file or CI, and bound the number of lines: a constant for the fixed messages
plus one per epoch (encoders) or per stage (generators) or per chunk (zoo builds); the
mid-epoch lines every ``WSPACE_PROGRESS_EVERY`` seconds are switched off by a large value
so that the bound does not depend on the machine's speed.
"""
from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from datasets_zoo.build.progress import Progress
from wspace.commands.quiet import KnownNoise
from wspace.progress import (LineProgress, LineReporter, fitting_log_interval, is_terminal, line_interval,
                             progress_callbacks)

ROOT = Path(__file__).resolve().parent.parent
NOISE = ("litlogger", "LeafSpec", "log_every_n_steps", "TPU available", "TqdmWarning")


class Tty(io.StringIO):
    """A text stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def run_wspace(*args: str, cwd: Path, timeout: int = 120) -> subprocess.CompletedProcess:
    """``python -m wspace *args`` with stdout and stderr captured to pipes (not a terminal)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), WSPACE_PROGRESS_EVERY="3600")
    return subprocess.run([sys.executable, "-m", "wspace", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def check_log(p: subprocess.CompletedProcess, max_lines: int) -> list[str]:
    """The run succeeded, wrote no carriage return and no known noise, in at most ``max_lines`` lines."""
    text = p.stdout + p.stderr
    assert p.returncode == 0, text
    assert "\r" not in text, text
    for noise in NOISE:
        assert noise not in text, text
    lines = text.splitlines()
    assert len(lines) <= max_lines, text
    return lines


# ------------------------------------------------------------------------------- units
def test_progress_callbacks_pick_the_bar_for_a_terminal_and_lines_otherwise():
    from lightning.pytorch.callbacks import TQDMProgressBar

    assert is_terminal(Tty()) and not is_terminal(io.StringIO())
    [bar] = progress_callbacks(True, stream=Tty())
    assert isinstance(bar, TQDMProgressBar)
    [lines] = progress_callbacks(True, name="vae", every=5, stream=io.StringIO())
    assert isinstance(lines, LineProgress) and lines.name == "vae" and lines.every == 5
    assert progress_callbacks(False, stream=Tty()) == [] and progress_callbacks(False, stream=io.StringIO()) == []
    assert progress_callbacks(True, stream=io.StringIO(), others=[TQDMProgressBar()]) == []  # the caller's own bar


def test_line_interval_and_log_interval(monkeypatch):
    monkeypatch.setenv("WSPACE_PROGRESS_EVERY", "7")
    assert line_interval() == 7 and line_interval(2) == 2
    for bad in ("x", "-1", "nan"):
        monkeypatch.setenv("WSPACE_PROGRESS_EVERY", bad)
        assert line_interval() == 30.0
    assert fitting_log_interval(10, [0] * 3) == 3 and fitting_log_interval(10, [0] * 30) == 10
    assert fitting_log_interval(None, iter(())) == 50 and fitting_log_interval(0, []) == 50


def test_line_reporter_prints_at_most_every_interval():
    now = [0.0]
    out = io.StringIO()
    rep = LineReporter("zoo x", every=10, stream=out, clock=lambda: now[0])
    assert not rep.tick("a")
    now[0] = 9.9
    assert not rep.tick("b")
    now[0] = 10.0
    assert rep.tick(lambda: "c")
    now[0] = 15.0
    assert not rep.tick("d")
    rep.line("e")
    assert out.getvalue().splitlines() == ["zoo x: c [0:10]", "zoo x: e [0:15]"]


@pytest.mark.parametrize("every", [3600, 0])
def test_line_progress_prints_a_line_per_epoch_and_per_interval(tmp_path, every):
    import lightning as L
    from lightning.pytorch.demos.boring_classes import BoringModel

    out = io.StringIO()
    trainer = L.Trainer(max_epochs=2, limit_train_batches=3, limit_val_batches=1, logger=False,
                        enable_checkpointing=False, enable_model_summary=False, default_root_dir=str(tmp_path),
                        callbacks=[LineProgress("boring", every=every, stream=out)], accelerator="cpu")
    trainer.fit(BoringModel())
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue() and lines[0].startswith("boring: fitting from epoch 1 step 0 (up to 2 epochs")
    ends = [ln for ln in lines if ln.startswith(("boring: epoch 1/2 step 3", "boring: epoch 2/2 step 6"))]
    if every:  # the start line and one line per epoch, nothing per batch
        assert len(lines) == 1 + 2 and len(ends) == 2
    else:  # also a line after every batch
        assert len(lines) == 1 + 2 * 3 + 2 and len(ends) == 4


def test_zoo_build_progress_off_a_terminal_is_a_line_per_chunk(capsys):
    bar = Progress(6, "zoo t", enabled=True)  # pytest's captured stderr is not a terminal
    for chunk in range(3):
        before = bar.n
        for _ in range(10):
            bar.update(0.25)  # overshoots the chunk's 2 networks: clamped at the total, rounded per chunk
        bar.finish_chunk(before, 2)
    bar.close()
    err = capsys.readouterr().err
    assert "\r" not in err and bar.n == 6
    assert err.splitlines()[0].startswith("zoo t: training 6 networks")
    assert [ln.split(" [")[0].split(",")[0] for ln in err.splitlines()[1:]] == [
        "zoo t: 2/6 networks (33%)", "zoo t: 4/6 networks (67%)", "zoo t: 6/6 networks (100%)"]
    silent = Progress(6, "zoo t", enabled=False)
    silent.update(1)
    silent.finish_chunk(0, 2)
    assert capsys.readouterr().err == "" and silent.n == 2


def test_known_noise_filter_drops_only_the_listed_info_messages():
    f = KnownNoise()

    def rec(msg: str, level: int = logging.INFO) -> logging.LogRecord:
        return logging.LogRecord("lightning.pytorch.utilities.rank_zero", level, __file__, 1, msg, None, None)

    assert not f.filter(rec("💡 Tip: For seamless cloud logging and experiment tracking, try installing [litlogger]"))
    assert not f.filter(rec("💡 Tip: For seamless cloud uploads and versioning, try installing [litmodels]"))
    assert not f.filter(rec("GPU available: False, used: False"))
    assert f.filter(rec("GPU available: True (cuda), used: True"))
    assert f.filter(rec("`Trainer.fit` stopped: `max_epochs=2` reached."))
    assert f.filter(rec("💡 Tip: For seamless cloud logging", logging.WARNING))


def test_library_users_still_see_every_warning():
    """Importing the library (not running the CLI) installs no filter."""
    code = ("import logging, warnings\n"
            "import wspace.commands.train, generators.fitting, datasets_zoo.build, wspace.progress\n"
            "from wspace.commands.quiet import LIGHTNING_LOGGERS\n"
            "assert not any('LeafSpec' in str(f[1] and f[1].pattern) for f in warnings.filters)\n"
            "assert not any(logging.getLogger(n).filters for n in LIGHTNING_LOGGERS)\n")
    p = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr


def test_quiet_third_party_hides_the_leafspec_warning_only():
    from wspace.commands.quiet import quiet_third_party

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        quiet_third_party()
        warnings.warn("`isinstance(treespec, LeafSpec)` is deprecated, use ...", FutureWarning)
        warnings.warn("something else is deprecated", FutureWarning)
    assert [str(w.message) for w in seen] == ["something else is deprecated"]


# ------------------------------------------------------------------ captured runs (pipes)
@pytest.fixture(scope="module")
def inr_zoo(tmp_path_factory) -> Path:
    from datasets_zoo.build import build_zoo

    return build_zoo("digits-inr", tmp_path_factory.mktemp("zoo") / "inr", size="small", progress=False)


def test_zoo_build_captured_output_is_a_few_lines(tmp_path):
    p = run_wspace("zoo", "build", "zoo=digits-inr", "size=small", f"out={tmp_path / 'z'}", cwd=tmp_path)
    # the start line, one line per chunk (a small zoo is one chunk) and "zoo written to ..."
    lines = check_log(p, max_lines=2 + 2)
    assert any("networks (100%)" in ln for ln in lines)


def test_encoder_training_captured_output_is_a_line_per_epoch(tmp_path, inr_zoo):
    epochs = 2
    p = run_wspace("train", "task=inr_classification", "encoder=statnn", f"zoo={inr_zoo}", f"out={tmp_path / 'r'}",
                   f"trainer.max_epochs={epochs}", cwd=tmp_path)
    # fixed lines: the start line, Lightning's "fit stopped" and two checkpoint-restore lines
    # for the test, the two result lines; then one line per epoch (and nothing per batch)
    lines = check_log(p, max_lines=6 + epochs)
    per_epoch = [ln for ln in lines if ln.startswith("wspace train: epoch ")]
    assert len(per_epoch) == epochs and all("val/loss=" in ln for ln in per_epoch)


def test_encoder_training_progress_off_is_silent(tmp_path, inr_zoo):
    p = run_wspace("train", "task=inr_classification", "encoder=statnn", f"zoo={inr_zoo}", f"out={tmp_path / 'r'}",
                   "trainer.max_epochs=1", "trainer.enable_progress_bar=false", cwd=tmp_path)
    lines = check_log(p, max_lines=6)
    assert not any(ln.startswith("wspace train: epoch ") or "fitting from" in ln for ln in lines)


@pytest.mark.slow
def test_generator_training_captured_output_is_a_few_lines_per_stage(tmp_path):
    from datasets_zoo.build import build_zoo

    zoo = build_zoo("digits-tasks", tmp_path / "zoo", size="small", progress=False)
    tiny = ["generator.vae.steps=6", "generator.vae.batch_size=8", "generator.vae.d_model=32",
            "generator.vae.latent_dim=8", "generator.condition.hidden=16", "generator.condition.contrastive_steps=2",
            "generator.denoiser.steps=6", "generator.denoiser.batch_size=8", "generator.denoiser.d_model=32",
            "generator.denoiser.depth=1", "generator.denoiser.warmup=2", "generator.checkpoint_every=3"]
    p = run_wspace("train", "generator=d2nwg", f"zoo={zoo}", f"out={tmp_path / 'g'}", *tiny, cwd=tmp_path,
                   timeout=300)
    # per stage (VAE, denoiser): a start line, an end line, Lightning's "fit stopped";
    # plus the final "trained ..." line and a few fixed messages of the generator
    check_log(p, max_lines=3 * 2 + 6)
