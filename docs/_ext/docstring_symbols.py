"""Sphinx extension: read ``*`` and ``|`` in docstrings as the plain-text symbols the package writes.

It also joins an ``Args:`` entry whose names wrap onto a second line, which napoleon would misread.

The docstrings give tensor shapes and norms as plain text — ``(B, C·|G|, *spatial)``, ``|f(x)|``,
``**kwargs`` — which reStructuredText would read as unfinished emphasis and as substitution references.
This extension escapes those symbols after napoleon has turned Google-style sections into fields, and leaves
alone what is real markup: ``*emphasis*``, ``**strong**``, inline literals, roles, literal blocks
(after ``::``), directive bodies and doctest lines.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["escape_line", "escape_docstring", "join_wrapped_names", "setup"]

# Pieces a line keeps verbatim: ``literals``, :role:`targets`, `interpreted text`, *emphasis*, **strong**.
_VERBATIM = re.compile(
    r"``.+?``"
    r"|(?::[\w.:+-]+:)?`[^`]+`_{0,2}"
    r"|(?<![\w*\\])\*\*[^\s*](?:[^*]*[^\s*])?\*\*(?![\w*])"
    r"|(?<![\w*\\])\*[^\s*](?:[^*]*[^\s*])?\*(?![\w*])"
)
_SYMBOL = re.compile(r"(?<!\\)([*|])")


def escape_line(line: str) -> str:
    """Escape the ``*`` and ``|`` of one docstring line that are not part of inline markup."""
    if line.lstrip().startswith(">>>"):
        return line
    out, pos = [], 0
    for match in _VERBATIM.finditer(line):
        out.append(_SYMBOL.sub(r"\\\1", line[pos : match.start()]))
        out.append(match.group(0))
        pos = match.end()
    out.append(_SYMBOL.sub(r"\\\1", line[pos:]))
    return "".join(out)


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def escape_docstring(lines: list[str]) -> list[str]:
    """Escape every line outside literal blocks (``::``) and directive bodies (``.. name::``)."""
    result: list[str] = []
    block_indent: int | None = None  # indent of the line that opened a literal block / directive
    for line in lines:
        if block_indent is not None:
            if not line.strip() or _indent(line) > block_indent:
                result.append(line)
                continue
            block_indent = None
        stripped = line.strip()
        opens_block = stripped.endswith("::") or stripped.startswith(".. ")
        result.append(line if stripped.startswith(".. ") else escape_line(line))
        if opens_block:
            block_indent = _indent(line)
    return result


_SECTION = re.compile(r"^\s*(Args|Arguments|Parameters|Keyword Args|Keyword Arguments|Attributes):\s*$")


def join_wrapped_names(lines: list[str]) -> list[str]:
    """Join an ``Args:`` entry whose list of names wraps onto the next line (``a, b,`` / ``    c: text``).

    Napoleon reads one entry per line, so the wrapped names would end the field list early.
    """
    result: list[str] = []
    entry_indent: int | None = None
    i = 0
    while i < len(lines):
        line = lines[i]
        if _SECTION.match(line):
            entry_indent = None
            result.append(line)
            section_indent = _indent(line)
            i += 1
            while i < len(lines) and (not lines[i].strip() or _indent(lines[i]) > section_indent):
                cur = lines[i]
                if cur.strip() and entry_indent is None:
                    entry_indent = _indent(cur)
                if (
                    cur.strip()
                    and _indent(cur) == entry_indent
                    and cur.rstrip().endswith(",")
                    and ":" not in cur
                    and i + 1 < len(lines)
                    and _indent(lines[i + 1]) > entry_indent
                ):
                    lines = lines[: i + 1] + [cur.rstrip() + " " + lines[i + 1].strip()] + lines[i + 2 :]
                    i += 1
                    continue
                result.append(cur)
                i += 1
            continue
        result.append(line)
        i += 1
    return result


def _join(app: Any, what: str, name: str, obj: Any, options: Any, lines: list[str]) -> None:
    lines[:] = join_wrapped_names(lines)


def _process(app: Any, what: str, name: str, obj: Any, options: Any, lines: list[str]) -> None:
    lines[:] = escape_docstring(lines)


def setup(app: Any) -> dict[str, Any]:
    """Join wrapped names before napoleon (priority 500); escape after it, so its fields are escaped as well."""
    app.setup_extension("sphinx.ext.autodoc")
    app.connect("autodoc-process-docstring", _join, priority=100)
    app.connect("autodoc-process-docstring", _process, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
