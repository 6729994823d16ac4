"""Task names: the grammar ``<base>[:<classes>][@<view>]``, parsing, canonical spelling,
and the class-subset names."""
from __future__ import annotations

import itertools
import re

from wspace.errors import WeightSpaceError

__all__ = ["INR_RESOLUTIONS", "task_forms", "parse_task_name", "canonical_name", "subset_tasks"]

INR_RESOLUTIONS = range(8, 65)

NAME_RE = re.compile(r"^(?P<base>digits-inr|digits|mnist1d)(?::(?P<classes>[0-9](?:-[0-9])*))?(?:@(?P<view>[a-z0-9]+))?$")
VIEWS = {"digits": ("flat", "image"), "mnist1d": ("flat", "signal")}


def task_forms() -> str:
    """The valid task-name forms, for error messages and docs."""
    return (
        "'digits' (flat [64]), 'digits@image' ([1, 8, 8]), 'digits:<d1>-<d2>-...' (2..10 distinct digits 0-9, "
        "e.g. 'digits:0-3-5-7-9', optionally with '@image'), 'mnist1d' (flat [40]), 'mnist1d@signal' ([1, 40]), "
        "'mnist1d:<d1>-<d2>-...', 'digits-inr[:<d1>-<d2>-...][@<resolution 8..64>]'"
    )


def parse_task_name(name: str) -> tuple[str, tuple[int, ...], str]:
    """-> (base, sorted classes, view), validated; raises WeightSpaceError."""
    if not isinstance(name, str):
        raise WeightSpaceError(f"task name must be a string, got {type(name).__name__}; valid forms: {task_forms()}")
    m = NAME_RE.match(name.strip())
    if m is None:
        raise WeightSpaceError(f"unknown task '{name}'; valid forms: {task_forms()}")
    base = m["base"]
    classes: tuple[int, ...] = tuple(range(10))
    if m["classes"] is not None:
        digits = [int(c) for c in m["classes"].split("-")]
        if len(set(digits)) != len(digits) or len(digits) < 2:
            raise WeightSpaceError(
                f"task '{name}': a class subset needs 2..10 distinct digits, got {m['classes']!r}; valid forms: {task_forms()}"
            )
        classes = tuple(sorted(digits))
    view = m["view"]
    if base == "digits-inr":
        view = view or "8"
        if not view.isdigit() or int(view) not in INR_RESOLUTIONS:
            raise WeightSpaceError(f"task '{name}': INR resolution must be an integer in 8..64; valid forms: {task_forms()}")
        view = str(int(view))
    else:
        view = view or "flat"
        if view not in VIEWS[base]:
            raise WeightSpaceError(f"task '{name}': view '@{view}' is not one of {VIEWS[base]}; valid forms: {task_forms()}")
    return base, classes, view


def canonical_name(base: str, classes: tuple[int, ...], view: str) -> str:
    """The canonical spelling of a parsed task name."""
    name = base
    if classes != tuple(range(10)):
        name += ":" + "-".join(map(str, classes))
    if view not in ("flat", "8"):
        name += "@" + view
    return name


def subset_tasks(k: int, base: str = "digits") -> list[str]:
    """Every k-way class-subset task name (``C(10, k)`` names, lexicographic), e.g.
    ``subset_tasks(2)[0] == "digits:0-1"``; ``base`` may carry a view (``"digits@image"``)."""
    if not 2 <= k <= 10:
        raise WeightSpaceError(f"subset size k must be in 2..10, got {k}")
    b, classes, view = parse_task_name(base)
    if classes != tuple(range(10)):
        raise WeightSpaceError(f"subset_tasks base must be a full task such as 'digits', got '{base}'")
    return [canonical_name(b, c, view) for c in itertools.combinations(range(10), k)]
