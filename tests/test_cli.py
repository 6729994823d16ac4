"""The ``wspace`` command: dispatch, Hydra plumbing, clean failures, packaging layout."""
from __future__ import annotations

import json
import importlib
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

import wspace
from wspace.commands import cli, info
from wspace.commands.hydra_args import hydra_order
from wspace.config import compose_config, config_dir
from wspace.spec import WeightSpaceSpec, spec_from_module

ROOT = Path(__file__).resolve().parent.parent


def run_wspace(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """``python -m wspace *args`` in a fresh interpreter, importing this source tree."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, "-m", "wspace", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


@pytest.fixture
def probe(tmp_path, monkeypatch):
    """Register a subcommand ``probe`` whose target records every config it receives."""
    (tmp_path / "wspace_probe_target.py").write_text(
        textwrap.dedent(
            """
            import os
            CALLS = []
            def main(cfg):
                CALLS.append((cfg, os.getcwd()))
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    mod = importlib.import_module("wspace_probe_target")
    mod.CALLS.clear()

    def register(config_name: str) -> list:
        monkeypatch.setitem(cli.SUBCOMMANDS, "probe", (config_name, "wspace_probe_target:main", "test probe"))
        return mod.CALLS

    yield register
    sys.modules.pop("wspace_probe_target", None)


@pytest.fixture
def zoo_preset_dir(tmp_path):
    """An extra config directory holding a zoo preset ``tiny`` (added with hydra.searchpath)."""
    d = tmp_path / "extra_configs"
    (d / "zoo").mkdir(parents=True)
    (d / "zoo" / "tiny.yaml").write_text("family: mlp\nsize: 4\n")
    return d


# ----------------------------------------------------------------------------- subprocess


def test_help_lists_every_subcommand(tmp_path, capsys):
    res = run_wspace("--help", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert cli.main([]) == 0  # no arguments: the same overview
    assert capsys.readouterr().out.strip() == res.stdout.strip()
    for name, (_, _, help_) in cli.SUBCOMMANDS.items():
        assert f"  {name} " in res.stdout and help_ in res.stdout
    for name in ("quickstart", "zoo build", "train", "sample", "audit", "bench"):
        assert name in cli.SUBCOMMANDS
    assert list(tmp_path.iterdir()) == []  # --help writes nothing


def test_version(tmp_path):
    res = run_wspace("--version", cwd=tmp_path)
    assert res.returncode == 0
    assert res.stdout.strip() == f"wspace {wspace.__version__}"


def test_info_override_reaches_target_and_writes_nothing(tmp_path):
    res = run_wspace("info", "arch=mlp", "width=8", "depth=3", "format=json", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    spec = WeightSpaceSpec.from_json(res.stdout)
    # 2->8, 8->8, 8->8, 8->1 with biases
    assert spec.num_params == (2 * 8 + 8) + 2 * (8 * 8 + 8) + (8 + 1) == 177
    assert spec == spec_from_module(info.example_module("mlp", 8, 3))
    assert list(tmp_path.iterdir()) == []


def test_subcommand_help_is_hydra_help(tmp_path):
    res = run_wspace("info", "--help", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("wspace info:")
    assert "== Config ==" in res.stdout and "width: 16" in res.stdout


def test_unavailable_subcommand_via_subprocess(tmp_path):
    missing = [n for n, (_, target, _) in cli.SUBCOMMANDS.items() if not _importable(target)]
    if not missing:
        pytest.skip("every subcommand is implemented")
    res = run_wspace(*missing[0].split(), "out=x", cwd=tmp_path)
    assert res.returncode == 2
    assert res.stderr.strip().count("\n") == 0 and "not available in this version" in res.stderr
    assert "Traceback" not in res.stderr and res.stdout == ""
    assert list(tmp_path.iterdir()) == []


def _importable(target: str) -> bool:
    try:
        cli.load_target(target)
    except cli.SubcommandUnavailable:
        return False
    return True


# ----------------------------------------------------------------------------- in-process


def test_unavailable_subcommand_fails_cleanly(monkeypatch, capsys, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(cli.SUBCOMMANDS, "ghost", ("info", "wspace.no_such_module:main", "not written yet"))
    assert cli.main(["ghost", "width=3"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == (
        f"wspace ghost: not available in this version of wspace ({wspace.__version__}): "
        "module 'wspace.no_such_module' does not exist"
    )
    monkeypatch.setitem(cli.SUBCOMMANDS, "ghost", ("info", "wspace.commands.cli:no_such_function", "not written yet"))
    assert cli.main(["ghost"]) == 2
    assert "has no function 'no_such_function'" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_broken_implementation_is_not_reported_as_unavailable(tmp_path, monkeypatch):
    (tmp_path / "wspace_broken_target.py").write_text("import wspace_dependency_that_does_not_exist\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ModuleNotFoundError, match="wspace_dependency_that_does_not_exist"):
        cli.load_target("wspace_broken_target:main")


def test_unknown_and_incomplete_commands(capsys):
    assert cli.main(["trian"]) == 2
    assert "did you mean 'train'" in capsys.readouterr().err
    assert cli.main(["zoo"]) == 2
    assert "needs a subcommand: build" in capsys.readouterr().err
    assert cli.main(["zoo", "--help"]) == 0
    assert "wspace zoo build" in capsys.readouterr().out
    assert cli.main(["--nope"]) == 2


def test_overrides_and_groups_reach_target(probe, zoo_preset_dir, tmp_path, monkeypatch, _wspace_home):
    calls = probe("zoo_build")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    out = tmp_path / "zoo_out"
    args = [f"hydra.searchpath=[file://{zoo_preset_dir}]", "zoo=tiny", "zoo.size=7", f"out={out}", "seed=3"]
    assert cli.main(["probe", *args]) == 0
    assert len(calls) == 1
    cfg, cwd = calls[0]
    assert cfg.zoo.family == "mlp" and cfg.zoo.size == 7  # the preset replaced `zoo: ???`, then was overridden
    assert cfg.out == str(out) and cfg.seed == 3 and cfg.device == "cpu"
    assert "hydra" not in cfg
    assert cwd == str(work)  # hydra.job.chdir is false
    assert list(work.iterdir()) == []  # Hydra's run record went to WSPACE_HOME, not the working directory
    assert len(list((_wspace_home / "runs" / "zoo_build").glob("*/.hydra/config.yaml"))) >= 1


def test_multirun_sweeps(probe, tmp_path, monkeypatch):
    calls = probe("info")
    monkeypatch.chdir(tmp_path)
    assert cli.main(["probe", "-m", "width=3,5", "arch=mlp,cnn"]) == 0
    got = sorted((c.width, c.arch) for c, _ in calls)
    assert got == [(3, "cnn"), (3, "mlp"), (5, "cnn"), (5, "mlp")]


@pytest.mark.parametrize("words", [["probe"], ["zoo", "probe"]], ids=["one-word", "two-word"])
@pytest.mark.parametrize("order", ["flag-first", "flag-middle", "flag-last", "before-subcommand"])
def test_multirun_flag_anywhere(probe, tmp_path, monkeypatch, words, order):
    """`-m` where Hydra users write it: first, among the overrides, last, even before the subcommand."""
    calls = probe("info")
    monkeypatch.setitem(cli.SUBCOMMANDS, " ".join(words), ("info", "wspace_probe_target:main", "test probe"))
    monkeypatch.chdir(tmp_path)
    over = ["width=3,5", "arch=mlp,cnn"]
    argv = {"flag-first": [*words, "-m", *over], "flag-middle": [*words, over[0], "--multirun", over[1]],
            "flag-last": [*words, *over, "-m"], "before-subcommand": ["-m", *words, *over]}[order]
    assert cli.main(argv) == 0
    assert sorted((c.width, c.arch) for c, _ in calls) == [(3, "cnn"), (3, "mlp"), (5, "cnn"), (5, "mlp")]


@pytest.mark.parametrize("words", [["info"], ["zoo", "build"]], ids=["one-word", "two-word"])
def test_print_flags_anywhere(words, capsys):
    """--cfg job, --help and --info print without running, wherever they stand."""
    over = ["seed=7"] if words == ["info"] else ["zoo=digits-tasks", "out=/nowhere", "seed=7"]
    assert cli.main([*words, *over[:1], "--cfg", "job", *over[1:]]) == 0
    assert "seed: 7" in capsys.readouterr().out
    assert cli.main(["--cfg", "job", *words, *over]) == 0
    assert "seed: 7" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:  # Hydra exits after printing the help
        cli.main([*words, over[0], "--help", *over[1:]])
    assert exc.value.code == 0
    assert f"wspace {' '.join(words)}: " in capsys.readouterr().out
    assert cli.main([*words, "--info", "searchpath", *over]) == 0
    assert "common" in capsys.readouterr().out  # the shared configs/common/ entry is on the search path


def test_conflicting_mode_flags_are_a_usage_error(capsys):
    assert cli.main(["zoo", "build", "-m", "zoo=digits-tasks", "--cfg", "job"]) == 2
    assert "use only one of --cfg, --multirun" in capsys.readouterr().err
    assert cli.main(["-m"]) == 2


def test_hydra_order_keeps_flag_values():
    assert hydra_order(["a=1", "--cfg", "job", "b=2", "-p", "x", "-m"]) == ["--cfg", "job", "-p", "x", "-m",
                                                                             "a=1", "b=2"]
    assert hydra_order(["a=1", "--info", "b=2"]) == ["--info", "a=1", "b=2"]  # --info without a topic
    assert hydra_order(["--info", "defaults", "a=1"]) == ["--info", "defaults", "a=1"]


def test_missing_required_value_is_one_clean_line(probe, tmp_path, monkeypatch, capsys):
    calls = probe("zoo_build")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exc:
        cli.main(["probe", "out=somewhere"])
    assert exc.value.code == 2
    assert "missing required value(s): zoo" in capsys.readouterr().err
    assert calls == []


def test_library_errors_are_one_line(tmp_path, monkeypatch, capsys):
    (tmp_path / "wspace_err_target.py").write_text(
        "from wspace.errors import WeightSpaceError\n"
        "def main(cfg):\n    raise WeightSpaceError('NaN found', file='a.safetensors', tensor='0.weight')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(cli.SUBCOMMANDS, "err", ("info", "wspace_err_target:main", "raises"))
    with pytest.raises(SystemExit) as exc:
        cli.main(["err"])
    assert exc.value.code == 1
    err = capsys.readouterr().err
    assert err.strip() == "wspace err: error: file 'a.safetensors', tensor '0.weight': NaN found"


def test_info_rejects_unknown_arch(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exc:
        cli.main(["info", "arch=transformer"])
    assert exc.value.code == 2
    assert "unknown example architecture 'transformer'" in capsys.readouterr().err


@pytest.mark.parametrize("arch", info.EXAMPLE_ARCHS)
def test_example_archs_have_specs(arch):
    spec = spec_from_module(info.example_module(arch, width=4, depth=2))
    assert spec.num_params == sum(p.numel() for p in info.example_module(arch, 4, 2).parameters())


# ----------------------------------------------------------------------------- configs / packaging


@pytest.mark.parametrize("name", list(cli.SUBCOMMANDS))
def test_every_subcommand_config_composes(name):
    cfg = compose_config(name, return_hydra_config=True)
    config_name = cli.SUBCOMMANDS[name][0]
    assert cfg.hydra.job.name == config_name
    assert cfg.hydra.job.chdir is False
    assert cfg.hydra.help.app_name == f"wspace {name}"
    assert cfg.hydra.help.header.startswith(f"wspace {name}: ")
    assert "seed" in cfg and "device" in cfg
    assert (ROOT / "configs" / config_name / f"{config_name}.yaml").is_file()


def test_group_names_do_not_shadow_plain_keys():
    """``zoo=<dir>`` and ``task=<name>`` are plain values outside the subcommand that owns the group."""
    assert compose_config("train", ["zoo=/tmp/some-zoo"]).zoo == "/tmp/some-zoo"
    cfg = compose_config("audit", ["zoo=/tmp/z", "task=digits:0-1", "generated=/tmp/g"])
    assert (cfg.zoo, cfg.task, cfg.generated) == ("/tmp/z", "digits:0-1", "/tmp/g")
    assert compose_config("sample", ["task=digits"]).task == "digits"
    assert compose_config("zoo build", ["zoo=digits-mlp"]).zoo.kind


def test_configs_are_the_sibling_package():
    assert Path(config_dir()) == ROOT / "configs"


def test_trainer_default_is_lightning_kwargs():
    import inspect

    import lightning

    cfg = compose_config("train")
    accepted = set(inspect.signature(lightning.Trainer.__init__).parameters)
    assert set(cfg.trainer) <= accepted


def test_packaging_covers_every_code_and_config_directory():
    """The find/package-data settings of pyproject.toml ship every code directory and every config."""
    tomllib = pytest.importorskip("tomllib")
    from setuptools import find_namespace_packages

    tool = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    find = tool["packages"]["find"]
    assert find["namespaces"] is True
    found = set(find_namespace_packages(where=str(ROOT), include=find["include"], exclude=find["exclude"]))
    for top in ("wspace", "datasets_zoo", "generators", "configs"):
        for d in [ROOT / top, *(p for p in (ROOT / top).rglob("*") if p.is_dir() and "__pycache__" not in p.parts)]:
            if any(d.glob("*.py")) or any(d.glob("*.yaml")):
                assert ".".join(d.relative_to(ROOT).parts) in found, f"{d.relative_to(ROOT)} would not be installed"
    assert not any("__pycache__" in name for name in found)
    assert "**/*.yaml" in tool["package-data"]["configs"]


def test_yaml_configs_parse():
    files = sorted((ROOT / "configs").rglob("*.yaml"))
    assert len(files) >= 9
    for f in files:
        yaml.safe_load(f.read_text())
    base = yaml.safe_load((ROOT / "configs" / "common" / "_base.yaml").read_text())
    assert base["hydra"]["job"]["chdir"] is False
    assert "WSPACE_HOME" in base["hydra"]["run"]["dir"]


def test_bench_runs_a_benchmark_script_and_rejects_unknown_names(tmp_path, capsys):
    d = tmp_path / "benchmarks"
    d.mkdir()
    (d / "echo.py").write_text("import sys, json, pathlib\n"
                               "pathlib.Path(sys.argv[-1]).write_text(json.dumps(sys.argv[1:]))\n")
    out = tmp_path / "r.json"
    assert cli.main(["bench", "name=echo", "quick=true", f"dir={d}", f"args=[{out}]"]) == 0
    assert json.loads(out.read_text()) == ["--quick", str(out)]
    with pytest.raises(SystemExit) as e:
        cli.main(["bench", "name=nope", f"dir={d}"])
    assert e.value.code == 1 and "unknown benchmark 'nope' (available: echo)" in capsys.readouterr().err
