"""The documentation builds with Sphinx, warnings as errors, and documents every public package."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def _load_docstring_symbols():
    spec = importlib.util.spec_from_file_location("docstring_symbols", DOCS / "_ext" / "docstring_symbols.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_public_package_has_an_api_page() -> None:
    packages = sorted(p.parent.name for p in (ROOT / "monai_equivariant").glob("*/__init__.py"))
    assert "groups" in packages and "networks" in packages
    missing = [name for name in packages if not (DOCS / "api" / f"{name}.rst").is_file()]
    assert not missing, f"add docs/api/<name>.rst (automodule) for: {missing}"


def test_docstring_symbols_are_escaped_outside_markup() -> None:
    ext = _load_docstring_symbols()
    assert ext.escape_line("x (B, C·|G|, *spatial) -> (B, C, *spatial)") == (
        r"x (B, C·\|G\|, \*spatial) -> (B, C, \*spatial)"
    )
    assert ext.escape_line("**kwargs: passed on") == r"\*\*kwargs: passed on"
    # real markup is kept: emphasis, strong, inline literals, roles
    line = "the *input* is **not** ``|x| * 2``, see :func:`rotate` and `a|b`"
    assert ext.escape_line(line) == line
    # literal blocks (after "::") and directive bodies are verbatim; the text after them is escaped again
    lines = ["Example::", "", "    y = f(*x) | 1", "", "after |G|", ".. code-block:: python", "", "    a * b"]
    assert ext.escape_docstring(lines) == [
        "Example::", "", "    y = f(*x) | 1", "", r"after \|G\|", ".. code-block:: python", "", "    a * b"
    ]


def test_wrapped_argument_names_are_joined_for_napoleon() -> None:
    ext = _load_docstring_symbols()
    lines = ["Text, with a comma,", "    indented", "", "Args:", "    x: one.", "    a, b,", "        c: shared.", "    y: two,"]
    assert ext.join_wrapped_names(lines) == [
        "Text, with a comma,", "    indented", "", "Args:", "    x: one.", "    a, b, c: shared.", "    y: two,"
    ]


@pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")  # Sphinx's own (napoleon on Sphinx 9)
def test_sphinx_build_has_no_warnings(tmp_path: Path) -> None:
    """``sphinx-build -W --keep-going -b html docs <tmp>``: any warning (bad docstring, broken link,
    missing page, failed import) fails the test."""
    # In a subprocess: autodoc (autodoc_preserve_defaults) rewrites the signatures of the classes it documents
    # in the process that imports them, which would leak into every later test.
    out = tmp_path / "html"
    cmd = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html", "-d", str(tmp_path / "doctrees")]
    run = subprocess.run([*cmd, str(DOCS), str(out)], capture_output=True, text=True)
    assert run.returncode == 0, f"Sphinx reported warnings (treated as errors):\n{run.stdout}\n{run.stderr}"
    assert (out / "index.html").is_file()
    for page in ("groups", "layers", "networks", "metrics", "handlers", "data", "utils"):
        html = (out / "api" / f"{page}.html").read_text(encoding="utf-8")
        assert 'class="py class"' in html or 'class="py function"' in html, f"api/{page} documents nothing"
    for page in DOCS.glob("*.md"):
        assert (out / f"{page.stem}.html").is_file(), f"{page.name} was not built"
