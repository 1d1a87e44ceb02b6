"""A griffe extension for the API reference: Sphinx roles as mkdocstrings links.

The package's docstrings name other objects the Sphinx way
(``:class:`~rerank_plugins.cache.ScoreCache```, ``:func:`resolve_family```), which reads
well in ``help()`` and in editors, but which mkdocstrings would print as is. At docs
build time each role becomes a link to the object's entry in the API reference (``~``
shows the last name only, as in Sphinx). A name is resolved in the docstring's own
scope, as Python would; an object the reference does not document, or one outside the
package, is shown as code without a link.
"""

from __future__ import annotations

import re
from typing import Any

from griffe import Extension, NameResolutionError, Object

ROLE = re.compile(
    r":(?:class|func|meth|attr|data|mod|exc|obj):`(?P<tilde>~?)(?P<target>[^`]+)`"
)


def link(obj: Object, match: re.Match[str]) -> str:
    """One role as an optional autoref: a link if its target is documented."""
    target = match["target"].strip().removesuffix("()")
    title = target.rsplit(".", 1)[-1] if match["tilde"] else target
    head, _, rest = target.partition(".")
    try:
        resolved = head if head == "rerank_plugins" else obj.resolve(head)
    except NameResolutionError:
        return f"`{title}`"
    path = f"{resolved}.{rest}" if rest else resolved
    if not path.startswith("rerank_plugins"):
        return f"`{title}`"
    return f'<autoref identifier="{path}" optional><code>{title}</code></autoref>'


class SphinxRoles(Extension):
    """Rewrites the roles once the whole package is loaded (names resolve across it)."""

    def on_package(self, *, pkg: Object, **kwargs: Any) -> None:
        for obj in walk(pkg):
            if obj.docstring is not None and ":" in obj.docstring.value:
                value = obj.docstring.value
                obj.docstring.value = ROLE.sub(lambda m, o=obj: link(o, m), value)


def walk(obj: Object) -> list[Object]:
    """``obj`` and every object defined under it (aliases: in their own module)."""
    found = [obj]
    for member in obj.members.values():
        if not member.is_alias:
            found.extend(walk(member))  # type: ignore[arg-type]
    return found
