"""The tutorial notebooks: each runs top to bottom in a fresh kernel in its short mode, and each is stored with
the outputs of its full run (every code cell has outputs, no errors, figures in at least five).

The short mode is switched by ``MONAI_EQ_TUTORIAL_FAST=1`` (read in the first code cell of every notebook).
The kernel imports ``monai_equivariant`` from this checkout (its root is put first on ``PYTHONPATH``).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

ROOT = Path(__file__).resolve().parents[1]
FOLDER = ROOT / "tutorials"
TUTORIALS = sorted(FOLDER.glob("*.ipynb"))
FAST_VARIABLE = "MONAI_EQ_TUTORIAL_FAST"


def _read(path: Path):
    return nbformat.read(str(path), as_version=4)


def _code_cells(notebook) -> list:
    return [cell for cell in notebook.cells if cell.cell_type == "code"]


def _has_image(notebook) -> bool:
    return any("image/png" in out.get("data", {}) for cell in _code_cells(notebook) for out in cell.outputs)


@pytest.mark.parametrize("notebook", TUTORIALS, ids=[p.stem for p in TUTORIALS])
def test_tutorial_runs_in_fast_mode(notebook, monkeypatch):
    """A fresh kernel executes every cell without error, in the tutorials folder, in the short mode."""
    monkeypatch.setenv(FAST_VARIABLE, "1")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]))
    if "OMP_NUM_THREADS" not in os.environ:  # torch threads busy-wait: more threads than free cores crawl
        monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")  # CI may set Agg: keep figures
    executed = _read(notebook)
    client = nbclient.NotebookClient(
        executed, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(FOLDER)}}
    )
    client.execute()
    code = _code_cells(executed)
    assert code and all(cell.outputs for cell in code), f"{notebook.name}: a code cell produced no output"


@pytest.mark.parametrize("notebook", TUTORIALS, ids=[p.stem for p in TUTORIALS])
def test_tutorial_has_stored_outputs(notebook):
    """Stored outputs come from a full-mode run: every code cell has outputs and none is an error; the first
    code cell defines the FAST switch from the environment variable."""
    stored = _read(notebook)
    code = _code_cells(stored)
    assert code, f"{notebook.name} has no code"
    assert FAST_VARIABLE in code[0].source, f"{notebook.name}: the first code cell must read {FAST_VARIABLE}"
    missing = [i for i, cell in enumerate(code) if not cell.outputs]
    assert not missing, f"{notebook.name}: code cells {missing} have no stored output (run tutorials/run_notebooks.py)"
    errors = [i for i, cell in enumerate(code) if any(out.output_type == "error" for out in cell.outputs)]
    assert not errors, f"{notebook.name}: code cells {errors} stored an error"
    text = "".join(out.get("text", "") for cell in code for out in cell.outputs if out.output_type == "stream")
    assert "FAST = False" in text, f"{notebook.name}: the stored outputs must come from the full mode"


def test_the_series_is_complete():
    """At least seven numbered notebooks, each listed in tutorials/README.md; at least five store figures."""
    assert len(TUTORIALS) >= 7, [p.name for p in TUTORIALS]
    readme = (FOLDER / "README.md").read_text()
    for path in TUTORIALS:
        assert path.stem[:2].isdigit(), f"{path.name} is not numbered"
        assert path.stem in readme, f"{path.name} is not listed in tutorials/README.md"
    with_images = [p.name for p in TUTORIALS if _has_image(_read(p))]
    assert len(with_images) >= 5, f"only {with_images} store a figure"
