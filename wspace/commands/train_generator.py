"""``wspace train generator=<name>``: train a weight generator on a zoo.

``wspace.commands.train:main`` hands the composed config here when ``cfg.generator`` is
set. ``cfg`` has ``zoo``, ``out``, ``seed``, ``device``, ``trainer`` (Lightning Trainer
keyword arguments; ``max_epochs`` is ignored: generators run their own step counts) and
``generator`` (``configs/train/generator/<name>.yaml``): its ``_target_`` names the
:class:`generators.pipeline.WeightGenerator` subclass, whose ``train`` classmethod gets the
rest of the node as its config. No generator is named here: a new one is a module plus a
config file.

``resume`` / ``overwrite`` become the :func:`wspace.fingerprint.rerun_policy` of the
training: a generator checks each stage's fingerprint before any work (see
:func:`generators.fitting.settle_stages`) and refuses a rerun with other settings unless
``resume=force`` (reuse the stages and checkpoints anyway) or ``overwrite=true`` (discard
the stages whose settings changed and train them again).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from wspace import interrupt
from wspace.config import group_options, to_plain
from wspace.curves import find_logs, plot_curves
from wspace.errors import WeightSpaceError
from wspace.fingerprint import rerun_policy

from .checks import check_against_defaults, check_config, check_trainer, explicit_overrides

if TYPE_CHECKING:
    from generators.pipeline import WeightGenerator

__all__ = ["main", "check_generator_config"]


def check_generator_config(cfg: Any) -> None:
    """Validate a ``wspace train generator=...`` config before any work: the top-level
    options, ``trainer.*`` (Lightning's signature) and ``generator.*`` against the types and
    ranges of the generator's packaged defaults (``configs/train/generator/<name>.yaml``)."""
    from generators.config import generator_defaults
    from generators.fitting import STAGE_OWNED

    get = cfg.get if hasattr(cfg, "get") else (lambda k, d=None: getattr(cfg, k, d))
    check_config("train", cfg)
    check_trainer(get("trainer"))
    given = explicit_overrides(cfg, "trainer")
    owned = sorted(k for k, v in given.items() if k in STAGE_OWNED and v is not None)
    if owned:  # set on the command line: refused rather than silently dropped
        raise WeightSpaceError(f"option trainer.{owned[0]}: not used by generator training (each stage runs "
                               f"generator.<stage>.steps steps with its own logger and checkpoints); remove it")
    gen = to_plain(get("generator"))
    if not isinstance(gen, dict):
        return
    name = gen.get("name")
    try:
        defaults = generator_defaults(str(name)) if name else None
    except Exception:  # a generator config outside the package: its class checks its own settings
        defaults = None
    if defaults is not None:
        check_against_defaults(gen, defaults, "generator")


def main(cfg: Any) -> "WeightGenerator":
    """Train the generator ``cfg.generator`` on ``cfg.zoo`` into ``cfg.out``; returns it."""
    from generators.pipeline import PIPELINE_DIR, generator_class

    get = cfg.get if hasattr(cfg, "get") else (lambda k, d=None: getattr(cfg, k, d))
    gen = to_plain(get("generator"))
    if not gen:
        raise WeightSpaceError(f"no generator chosen: add generator=<name> "
                               f"(available: {', '.join(group_options('train', 'generator'))})")
    if get("zoo") in (None, "???") or get("out") in (None, "???"):
        raise WeightSpaceError("train needs zoo=<dir> and out=<dir>")
    check_generator_config(cfg)
    gen = dict(gen)
    target = gen.pop("_target_", None)
    name = gen.pop("name", None)
    if target is None:
        raise WeightSpaceError(f"the generator config{f' {name!r}' if name else ''} has no _target_ naming its "
                               f"class (e.g. _target_: generators.d2nwg.D2NWG)")
    cls = generator_class(str(target), trusted=True)  # the user's own config: trusted like code
    from generators.fitting import STAGE_OWNED

    # epoch / time limits of a trainer group a generator config did not replace (trainer=default):
    # not the user's, and meaningless for fixed-step stages (given ones were refused above)
    trainer = {k: v for k, v in (to_plain(get("trainer")) or {}).items() if k not in STAGE_OWNED}
    progress = bool(trainer.get("enable_progress_bar", True))
    out = str(get("out"))
    interrupt.set_resume_hint(f"finished stages in {out}/stages, checkpoints in {out}/checkpoints")
    with rerun_policy(get("resume", True), get("overwrite", False)):
        pipe = cls.train(str(get("zoo")), out, gen, seed=int(get("seed", 0) or 0),
                         device=str(get("device", "cpu") or "cpu"), trainer=trainer, progress=progress)
    curves = None
    if find_logs(out):  # Lightning-trained stages: their CSV logs as out/curves.png (wspace.curves)
        try:
            curves = plot_curves(out)
        except WeightSpaceError as e:
            print(f"wspace train: note: no curves.png ({e})")
    shown = "" if curves is None else f", curves in {curves}"
    task = " task=<name>" if getattr(pipe, "conditional", True) else ""  # unconditional pipelines take none
    print(f"trained {pipe!r}; pipeline saved to {out}/{PIPELINE_DIR}{shown} "
          f"(sample with: wspace sample checkpoint={out}{task} out=<dir>)")
    return pipe
