"""Execute the tutorial notebooks in place, in a fresh kernel each, and store their outputs.

    PYTHONPATH=$PWD python tutorials/run_notebooks.py                  # all notebooks, full mode
    PYTHONPATH=$PWD python tutorials/run_notebooks.py 02 04            # the notebooks whose names start so
    PYTHONPATH=$PWD python tutorials/run_notebooks.py --fast --dry 02  # the CI mode, outputs not written

Each notebook runs with the folder ``tutorials/`` as working directory (as MONAI's tutorials do) and reads
``MONAI_EQ_TUTORIAL_FAST`` (set here to ``1`` with ``--fast``, else ``0``). The kernel inherits this process's
environment, so ``PYTHONPATH`` decides which ``monai_equivariant`` it imports; ``OMP_NUM_THREADS`` defaults to 1
(torch's threads busy-wait: with other jobs on the cores, 2 threads ran a U-Net 60× slower than 1 here).
Prints the seconds each took.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

FAST_VARIABLE = "MONAI_EQ_TUTORIAL_FAST"
"""Environment variable that switches every notebook to its short mode (``"1"``)."""
FOLDER = Path(__file__).resolve().parent


def execute(path: Path, fast: bool, timeout: int = 1800) -> tuple[nbformat.NotebookNode, float]:
    """Run the notebook at ``path`` top to bottom in a new kernel; return the executed notebook and seconds."""
    notebook = nbformat.read(str(path), as_version=4)
    previous = os.environ.get(FAST_VARIABLE)
    os.environ[FAST_VARIABLE] = "1" if fast else "0"
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # on a shared machine more threads than free cores crawl
    os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"  # figures as stored PNG outputs
    try:
        client = NotebookClient(
            notebook, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
        )
        start = time.perf_counter()
        client.execute()
        seconds = time.perf_counter() - start
    finally:
        if previous is None:
            os.environ.pop(FAST_VARIABLE, None)
        else:
            os.environ[FAST_VARIABLE] = previous
    return notebook, seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("prefixes", nargs="*", help="run only notebooks whose file name starts with one of these")
    parser.add_argument("--fast", action="store_true", help="short mode (what CI runs)")
    parser.add_argument("--dry", action="store_true", help="do not write the outputs back")
    args = parser.parse_args(argv)
    notebooks = sorted(FOLDER.glob("*.ipynb"))
    if args.prefixes:
        notebooks = [p for p in notebooks if any(p.name.startswith(prefix) for prefix in args.prefixes)]
    if not notebooks:
        print("no notebook matches", args.prefixes, file=sys.stderr)
        return 1
    total = 0.0
    for path in notebooks:
        notebook, seconds = execute(path, args.fast)
        total += seconds
        if not args.dry:
            nbformat.write(notebook, str(path))
        print(f"{path.name}: {seconds:.0f} s ({'fast' if args.fast else 'full'} mode)", flush=True)
    print(f"total: {total:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
