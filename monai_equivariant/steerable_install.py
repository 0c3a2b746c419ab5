"""Install the steerable networks' escnn with no compiler: ``python -m monai_equivariant.steerable_install``.

escnn requires ``py3nj``, which PyPI has only as Fortran source, so ``pip install escnn`` needs gfortran. escnn
only warns without py3nj (it serves SO(3) irreps; the SE(2) steerable nets here do not use it). This runs, with
the interpreter that runs it:

    pip install <the requirements of this package's [steerable] extra>    # numpy<2, lie_learn, joblib, pymanopt, autograd
    pip install --no-deps escnn>=1.0.11

escnn imports ``lie_learn``, whose compiled modules are built against numpy 1.x (wheels for Python 3.10-3.12),
so the steerable extra keeps numpy below 2. ``--dry-run`` prints the commands without running them.
"""

from __future__ import annotations

import argparse
import configparser
import importlib.metadata
import re
import shlex
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["ESCNN", "EXTRA", "install_commands", "main", "steerable_requirements"]

DISTRIBUTION = "monai_equivariant"
EXTRA = "steerable"
ESCNN = "escnn>=1.0.11"
"""escnn itself, installed without its dependencies (its requirement py3nj needs a Fortran compiler)."""
LAST_PYTHON = (3, 12)
"""The newest Python with lie_learn wheels (and numpy 1.x wheels); newer ones would compile both."""


def _checkout_requirements() -> list[str] | None:
    """The [steerable] extra from the setup.cfg of the checkout this package is imported from (None when it is
    not imported from a checkout: a wheel install has no setup.cfg next to the package)."""
    path = Path(__file__).resolve().parents[1] / "setup.cfg"
    cfg = configparser.ConfigParser(interpolation=None)
    if not path.is_file() or not cfg.read(path) or cfg.get("metadata", "name", fallback="") != DISTRIBUTION:
        return None
    lines = cfg.get("options.extras_require", EXTRA, fallback="").splitlines()
    return [line.split("#", 1)[0].strip() for line in lines if line.split("#", 1)[0].strip()]


def _installed_requirements() -> list[str]:
    """The [steerable] extra from the installed package's metadata (markers dropped)."""
    try:
        requires = importlib.metadata.requires(DISTRIBUTION) or []
    except importlib.metadata.PackageNotFoundError as error:
        raise RuntimeError(
            f"{DISTRIBUTION} is not installed (no package metadata): install it first, e.g. pip install <checkout>"
        ) from error
    marker = re.compile(r"""extra\s*==\s*["']""" + EXTRA + r"""["']""")
    return [req.split(";")[0].strip() for req in requires if ";" in req and marker.search(req.split(";", 1)[1])]


def steerable_requirements() -> list[str]:
    """The requirements of this package's ``[steerable]`` extra, e.g. ``["numpy<2", "lie_learn", ...]``: from the
    checkout's setup.cfg when the package is imported from a checkout, else from the installed metadata (both
    come from setup.cfg). Raises RuntimeError when neither declares the extra (a stale install)."""
    requirements = _checkout_requirements()
    if requirements is None:
        requirements = _installed_requirements()
    if not requirements:
        raise RuntimeError(
            f"the {DISTRIBUTION} found here declares no [{EXTRA}] extra (an install older than the extra?): "
            "reinstall the package (pip install <checkout or wheel>), then run this again"
        )
    return requirements


def install_commands(python: str = sys.executable) -> list[list[str]]:
    """The two pip commands (argument lists) that install the steerable extra with no compiler."""
    pip = [python, "-m", "pip", "install"]
    return [pip + steerable_requirements(), pip + ["--no-deps", ESCNN]]


def main(argv: Sequence[str] | None = None) -> int:
    """Run (or with ``--dry-run`` print) :func:`install_commands`; the exit status of the first failing pip."""
    parser = argparse.ArgumentParser(prog="python -m monai_equivariant.steerable_install",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="print the pip commands, run nothing")
    args = parser.parse_args(argv)
    if sys.version_info[:2] > LAST_PYTHON:
        print(
            f"warning: Python {sys.version_info[0]}.{sys.version_info[1]}: escnn's lie_learn and numpy 1.x have "
            f"wheels up to Python {LAST_PYTHON[0]}.{LAST_PYTHON[1]}; pip will try to compile them (C compiler)",
            file=sys.stderr,
        )
    for command in install_commands():
        print("+", shlex.join(command), flush=True)  # quoted: copy-paste safe ("numpy<2")
        if not args.dry_run:
            status = subprocess.call(command)
            if status:
                return status
    return 0


if __name__ == "__main__":
    sys.exit(main())
