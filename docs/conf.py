"""Sphinx configuration: Markdown pages (myst-parser) and an API reference from the docstrings (autodoc).

Build (CI runs the same through ``tests/test_docs.py``)::

    .venv/bin/python -m sphinx -W --keep-going -b html docs docs/_build/html
"""

from __future__ import annotations

import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT))  # document this checkout, not whatever the environment has installed
sys.path.insert(0, str(DOCS / "_ext"))

import monai_equivariant  # noqa: E402

project = "monai_equivariant"
author = "monai_equivariant contributors"
copyright = "monai_equivariant contributors, Apache-2.0"
release = version = monai_equivariant.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",  # Google-style "Args:" / "Returns:" sections, as in MONAI's docstrings
    "sphinx.ext.viewcode",
    "myst_parser",
    "docstring_symbols",  # docs/_ext: plain-text shapes like (B, C·|G|, *spatial) stay plain text
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"

# API pages of packages that are not in this checkout yet are left out (their modules land one by one);
# a package that exists but fails to import still fails the build.
OPTIONAL_PACKAGES = ("bundle", "inferers", "transforms", "visualize")
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"] + [
    f"api/{name}.rst" for name in OPTIONAL_PACKAGES if not (ROOT / "monai_equivariant" / name).is_dir()
]

# MyST: headings get anchors for [text](page.md#anchor) links; $...$ stays literal text.
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

# autodoc: every public name (each package's __all__), signatures with their type hints.
autodoc_default_options = {"members": True, "show-inheritance": True, "member-order": "bysource"}
autodoc_typehints = "signature"
autodoc_preserve_defaults = True
autoclass_content = "class"  # Args live in the class docstrings
autosummary_generate = False
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False

html_theme = "alabaster"
html_title = f"monai_equivariant {release}"
html_static_path: list[str] = []
