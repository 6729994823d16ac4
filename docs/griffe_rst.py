"""A griffe extension for this site: the docstrings of wspace use a few reST idioms
(``:class:`~wspace.WeightSpace```, ``Example::``) inside Google-style sections;
mkdocstrings renders Markdown, so turn them into their Markdown forms before parsing.

Roles become inline code (``~a.b.C`` shows ``C``, as in Sphinx), not links, so that a
reference to an object the site does not document never fails ``mkdocs build --strict``.
"""
from __future__ import annotations

import re
from typing import Any

from griffe import Extension

_ROLE = re.compile(r":(?:py:)?(?:class|func|meth|mod|attr|data|exc|obj|const|ref):`(~?)([^`<]+?)(?:\s*<[^>]+>)?`")
_LITERAL_INTRO = re.compile(r"(\S)::[ \t]*$", re.MULTILINE)  # "Example::" -> "Example:"
_BARE_INTRO = re.compile(r"^([ \t]*)::[ \t]*$", re.MULTILINE)  # a line holding only "::"


def _role(m: re.Match) -> str:
    short, target = m.group(1), m.group(2).strip()
    return f"`{target.rsplit('.', 1)[-1] if short else target}`"


def rst_to_markdown(text: str) -> str:
    """The Markdown form of a docstring written with the reST idioms above."""
    text = _ROLE.sub(_role, text)
    text = _LITERAL_INTRO.sub(r"\1:", text)
    return _BARE_INTRO.sub("", text)


class RstRoles(Extension):
    """Rewrite every docstring once, when griffe creates its object."""

    def on_instance(self, *, obj: Any, **kwargs: Any) -> None:
        doc = getattr(obj, "docstring", None)
        if doc is not None and doc.value:
            doc.value = rst_to_markdown(doc.value)
