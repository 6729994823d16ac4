"""Model Zoos (Schürholt et al., NeurIPS 2022 D&B): ray-tune experiment trees.

Layout read (``ModelZoos/ModelZooDataset``)::

    <zoo>/tune_zoo_<name>/               (or <zoo> itself, or one trial directory)
        config.json, dataset.pt          (not read: dataset.pt is an arbitrary pickle)
        <trial>/params.json              the trial's config
        <trial>/result.json              JSON lines, one per training iteration
        <trial>/checkpoint_<e>/checkpoints   or checkpoint_<e:06d>/checkpoints
                                         torch state_dict (keys module_list.<i>.weight/bias)

Each ``checkpoints`` file is one record: ``run`` = trial directory, ``epoch`` = ``e``,
``metrics`` = the numeric fields of the ``result.json`` line whose
``training_iteration == e`` (the upstream loader's ``epoch - offset`` rule), plus
``ggap = train_acc - test_acc``; ``hparams`` = the trial config; ``seed`` =
``config["seed"]``; ``task`` = the experiment directory name.

Architecture: rebuilt from ``config["model::type"]`` (``MLP``, ``CNN`` = CNN-s,
``CNN2``, ``CNN3`` = CNN-l, as in upstream ``def_net.py``, with ``model::nlin`` and
``model::dropout`` deciding the module_list indices); other types need ``spec=``.
Without a config, an MLP is inferred from the first checkpoint (``activation=``,
default ``leakyrelu`` as upstream). The CNNs flatten a 3x3 / 2x2 map into the first
linear layer: those channels are kept fixed (see ``spec_with_spatial_flatten``).
"""
from __future__ import annotations

import json
import re
from collections import OrderedDict
from pathlib import Path

from torch import nn

from wspace.errors import WeightSpaceError
from wspace.modules import activation_module
from wspace.spec import WeightSpaceSpec

from .support import FileSource, infer_mlp_spec, spec_with_spatial_flatten, state_dict_layout

NAME = "model_zoos"
_CKPT_RE = re.compile(r"^checkpoint_(\d+)$")
_RAY_KEYS = {
    "training_iteration", "timesteps_total", "episodes_total", "time_this_iter_s", "time_total_s", "timestamp",
    "time_since_restore", "timesteps_since_restore", "iterations_since_restore", "pid", "done",
    "episodes_this_iter", "timesteps_this_iter", "warmup_time",
}
# The nonlinearities upstream's def_net knows, in its spelling; built from the core table
# (wspace.modules), except CELU, which upstream offers and weight-space specs do not.
_NLIN = ("leakyrelu", "relu", "tanh", "sigmoid", "silu", "gelu", "elu", "celu")


def _trial_dirs(root: Path) -> list[Path]:
    if (root / "result.json").is_file():
        return [root]
    found = [p.parent for p in root.glob("*/result.json")]
    if not found:
        found = [p.parent for p in root.glob("*/*/result.json")]
    return sorted(found)


def detect(path: Path) -> bool:
    """A directory with ray-tune trials (``result.json`` + ``checkpoint_*`` folders)."""
    for t in _trial_dirs(path)[:3]:
        if any(_CKPT_RE.match(c.name) for c in t.iterdir() if c.is_dir()):
            return True
    return False


def _read_results(path: Path) -> list[dict]:
    rows = []
    try:
        lines = path.read_text().splitlines()
    except OSError as e:
        raise WeightSpaceError(f"cannot read: {e}", file=path) from e
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as e:
            if i == len(lines) - 1:  # a torn last line of a killed trial
                break
            raise WeightSpaceError(f"line {i + 1} is not valid JSON: {e}", file=path) from e
    return rows


def _nlin(name: str | None) -> nn.Module | None:
    key = str(name).lower() if name is not None else None
    if key not in _NLIN:
        return None
    return nn.CELU() if key == "celu" else activation_module(key)


def model_zoos_module(config: dict) -> nn.Sequential:
    """The upstream ``def_net`` network for ``config`` as ``Sequential(module_list=...)``.

    Returns a module on the ``meta`` device (only shapes matter). Raises for model types
    that are not MLP / CNN / CNN2 / CNN3.
    """
    kind = str(config.get("model::type", ""))
    nlin = config.get("model::nlin", "leakyrelu")
    dropout = float(config.get("model::dropout", 0.0) or 0.0)
    layers: list[nn.Module] = []

    def act() -> None:
        a = _nlin(nlin)
        if a is not None:
            layers.append(a)

    def drop(always: bool = False) -> None:
        if dropout > 0 or always:
            layers.append(nn.Dropout(dropout))

    if kind == "MLP":
        dims = config.get("model::h_dim", [30, 15])
        dims = list(dims) if isinstance(dims, (list, tuple)) else [dims]
        dims = [int(config.get("model::i_dim", 14))] + [int(d) for d in dims]
        bias = bool(config.get("model::use_bias", True))
        for a, b in zip(dims[:-1], dims[1:]):
            layers.append(nn.Linear(a, b, bias=bias, device="meta"))
            act()
            drop()
        layers.append(nn.Linear(dims[-1], int(config.get("model::o_dim", 10)), bias=bias, device="meta"))
    elif kind in ("CNN", "CNN2", "CNN3"):
        c_in = int(config.get("model::channels_in", 1))
        conv = lambda a, b, k: nn.Conv2d(a, b, k, device="meta")  # noqa: E731
        if kind in ("CNN", "CNN2"):
            c1, c2, c3, k3 = (8, 6, 4, 2) if kind == "CNN" else (6, 9, 6, 2)
            layers += [conv(c_in, c1, 5), nn.MaxPool2d(2, 2)]
            act(); drop()  # noqa: E702
            layers += [conv(c1, c2, 5), nn.MaxPool2d(2, 2)]
            act(); drop()  # noqa: E702
            layers += [conv(c2, c3, k3)]
            act()
            layers += [nn.Flatten(), nn.Linear(3 * 3 * c3, 20, device="meta")]
            act(); drop()  # noqa: E702
        else:
            for a, b in ((c_in, 16), (16, 32), (32, 15)):
                layers += [conv(a, b, 3), nn.MaxPool2d(2, 2)]
                act(); drop(always=True)  # noqa: E702
            layers += [nn.Flatten(), nn.Linear(15 * 2 * 2, 20, device="meta")]
            act(); drop(always=True)  # noqa: E702
        layers.append(nn.Linear(20, 10, device="meta"))
    else:
        raise WeightSpaceError(f"Model Zoos model type '{kind}' is not rebuilt automatically; pass spec=")
    return nn.Sequential(OrderedDict(module_list=nn.Sequential(*layers)))


def open_source(path: Path, *, spec: WeightSpaceSpec | None = None, activation: str = "leakyrelu") -> FileSource:
    """Read a Model Zoos ray-tune tree (see the module docstring)."""
    trials = _trial_dirs(path)
    if not trials:
        raise WeightSpaceError("no ray-tune trial (result.json) found", file=path)
    records, files = [], []
    configs: dict[str, dict] = {}
    for t in trials:
        results = _read_results(t / "result.json")
        config: dict = {}
        if (t / "params.json").is_file():
            try:
                config = json.loads((t / "params.json").read_text())
            except json.JSONDecodeError as e:
                raise WeightSpaceError(f"not valid JSON: {e}", file=t / "params.json") from e
        elif results and isinstance(results[0].get("config"), dict):
            config = results[0]["config"]
        by_iter = {r["training_iteration"]: r for r in results if "training_iteration" in r}
        run = t.relative_to(path).as_posix() if t != path else t.name
        task = t.parent.name if t != path else path.parent.name
        ckpts = sorted(((int(m.group(1)), c) for c in t.iterdir() if c.is_dir() and (m := _CKPT_RE.match(c.name))))
        for e, c in ckpts:
            f = c / "checkpoints"
            if not f.is_file():  # ray leaves empty checkpoint folders when a trial is killed
                continue
            res = by_iter.get(e) if by_iter else (results[e] if e < len(results) else None)
            metrics = {k: v for k, v in (res or {}).items()
                       if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in _RAY_KEYS}
            if "train_acc" in metrics and "test_acc" in metrics:
                metrics["ggap"] = metrics["train_acc"] - metrics["test_acc"]
            records.append({
                "id": f"{run}/{c.name}", "run": run, "seed": config.get("seed"), "task": task, "epoch": e,
                "hparams": config, "metrics": metrics, "spec_id": None,
            })
            files.append(f)
            configs.setdefault(run, config)
    if not records:
        raise WeightSpaceError("no checkpoint_*/checkpoints file found", file=path)
    specs: "OrderedDict[str, WeightSpaceSpec]" = OrderedDict()
    origin = files[0]
    if spec is not None:
        specs["spec-0"] = spec
        for r in records:
            r["spec_id"] = "spec-0"
    else:
        # One spec per distinct architecture config (a hyper-parameter zoo varies nlin / dropout).
        arch_keys = ("model::type", "model::nlin", "model::dropout", "model::channels_in", "model::i_dim",
                     "model::h_dim", "model::o_dim", "model::use_bias")
        by_arch: dict[str, str] = {}
        for r, f in zip(records, files):
            cfg = configs[r["run"]]
            key = json.dumps({k: cfg.get(k) for k in arch_keys}, sort_keys=True, default=str)
            if key not in by_arch:
                if cfg.get("model::type"):
                    s = spec_with_spatial_flatten(model_zoos_module(cfg))
                else:
                    s = infer_mlp_spec(state_dict_layout(f), activation=activation, file=f)
                sid = next((i for i, v in specs.items() if v == s), None)
                if sid is None:
                    sid = f"spec-{len(specs)}"
                    specs[sid] = s
                by_arch[key] = sid
            r["spec_id"] = by_arch[key]
    return FileSource(path, specs, records, files, origin=origin if spec is None and len(specs) == 1 else None,
                      fmt=NAME)
