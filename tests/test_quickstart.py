"""The quickstart tour end to end, on a tiny configuration."""
import json

from datasets_zoo import Zoo
from wspace.commands.quickstart import run_quickstart
from wspace.config import compose_config

TINY = {"tasks": 8, "seeds": 2, "epochs": 3, "samples_per_task": 2, "finetune_steps": [0, 5],
        "generator": {"vae": {"steps": 10, "batch_size": 16}, "denoiser": {"steps": 10, "batch_size": 16},
                      "checkpoint_every": 5}}


def test_quickstart_writes_zoo_generator_samples_audit_and_summary(tmp_path, capsys):
    s = run_quickstart(tmp_path / "qs", progress=False, config=TINY)
    out = capsys.readouterr().out
    assert "held-out tasks, mean test accuracy" in out and "audit of the samples" in out
    assert s["zoo"]["heldout_tasks"] == 4 and s["zoo"]["checkpoints"] == 16
    acc = s["heldout_accuracy"]
    assert set(acc["generated"]) == set(acc["random_init"]) == {0, 5}
    # the default sampling refits the output layer on the shots: the same step on random layers is reported
    assert s["readout"] == "ridge" and set(acc["random_init+ridge"]) == {0, 5}
    assert "D2NWG + ridge readout" in out and "random + ridge readout" in out
    assert all(0.0 <= v <= 1.0 for v in [*acc["generated"].values(), *acc["random_init"].values()])
    assert abs(sum(s["audit"]["fractions"].values()) - 1.0) < 1e-9
    assert s["audit"]["answer"].startswith("Of ") and s["audit"]["answer"] in out
    samples = Zoo.open(tmp_path / "qs" / "samples")
    assert len(samples) == 4 * 2 and samples.spec == Zoo.open(tmp_path / "qs" / "zoo").spec
    assert (tmp_path / "qs" / "audit" / "report.html").is_file()
    assert json.loads((tmp_path / "qs" / "summary.json").read_text())["zoo"]["checkpoints"] == 16


def test_quickstart_cli_composes_with_defaults():
    cfg = compose_config("quickstart")
    assert cfg.out and cfg.quickstart.samples_per_task >= 1 and cfg.quickstart.generator.vae.steps > 0
