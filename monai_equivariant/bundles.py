"""The MONAI bundles that ship with the package, and ``init``, which puts one in a folder to run it.

    python -m monai_equivariant.bundles list
    python -m monai_equivariant.bundles init polyp_segmentation DIR
    python -m monai.bundle run --config_file DIR/configs/train.json --meta_file DIR/configs/metadata.json \\
        --logging_file DIR/configs/logging.conf --bundle_root DIR
    python -m monai.bundle verify_metadata --meta_file DIR/configs/metadata.json \\
        --filepath "$(python -m monai_equivariant.bundles schema)"     # offline: the shipped schema

The bundles live in ``bundles/`` at the repository root; a wheel carries them as ``monai_equivariant/_bundles/``
(see setup.py). From a checkout that is imported without being installed (``PYTHONPATH``, or an editable install
made before the bundles were package data) the checkout's own ``bundles/`` is used.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["BUNDLE_FILES", "bundle_names", "bundle_path", "bundles_folder", "init_bundle", "main", "metadata_schema"]

BUNDLE_FILES = ("configs", "docs", "LICENSE", "large_files.yml")
"""What a bundle folder ships (the model-zoo layout); run outputs (``models/``, ``eval/``, ...) are not copied."""

_PACKAGE = Path(__file__).resolve().parent


def bundles_folder() -> Path:
    """The folder that holds every shipped bundle: the package's ``_bundles/`` (a wheel or an editable install),
    else the checkout's ``bundles/`` next to the package. Raises FileNotFoundError naming both when neither has
    a bundle."""
    for folder in (_PACKAGE / "_bundles", _PACKAGE.parent / "bundles"):
        if any(folder.glob("*/configs/metadata.json")):
            return folder
    raise FileNotFoundError(
        f"no bundles found: neither {_PACKAGE / '_bundles'} (an installed package) nor {_PACKAGE.parent / 'bundles'}"
        " (a checkout) holds <name>/configs/metadata.json; reinstall the package (pip install <checkout or wheel>)"
    )


def bundle_names() -> list[str]:
    """Names of the shipped bundles (sorted), e.g. ``["histopathology_classification", ...]``."""
    return sorted(path.parent.parent.name for path in bundles_folder().glob("*/configs/metadata.json"))


def bundle_path(name: str) -> Path:
    """The shipped folder of bundle ``name`` (read it, never run in it: a run writes into its bundle root)."""
    names = bundle_names()
    if name not in names:
        raise ValueError(f"unknown bundle {name!r}: expected one of {names}")
    return bundles_folder() / name


def metadata_schema() -> Path:
    """The bundle metadata schema shipped with the bundles (``schema/meta_schema.json``), for an offline
    ``monai.bundle verify_metadata --filepath``."""
    return bundles_folder() / "schema" / "meta_schema.json"


def init_bundle(name: str, directory: str | Path, overwrite: bool = False) -> Path:
    """Copy bundle ``name`` (configs, docs, LICENSE, large_files.yml) into ``directory``, which becomes its bundle
    root, and return it. ``directory`` may exist but must not hold a ``configs/`` folder already unless
    ``overwrite`` is set (then the shipped files replace those there; run outputs are left alone)."""
    source = bundle_path(name)
    target = Path(directory).expanduser().resolve()
    if target.exists() and not target.is_dir():
        raise NotADirectoryError(f"bundle folder {str(target)!r} is a file: expected a folder or a new path")
    if (target / "configs").exists() and not overwrite:
        raise FileExistsError(
            f"{str(target / 'configs')!r} exists: init writes a bundle into an empty or new folder "
            "(pass --overwrite to replace the shipped files there)"
        )
    target.mkdir(parents=True, exist_ok=True)
    for item in BUNDLE_FILES:
        path = source / item
        if path.is_dir():
            shutil.copytree(path, target / item, dirs_exist_ok=True)
        elif path.is_file():
            shutil.copy2(path, target / item)
    return target


def _run_command(root: Path) -> str:
    """The ``monai.bundle run`` command line that trains the bundle initialised in ``root``."""
    configs = root / "configs"
    return (
        f'python -m monai.bundle run --config_file "{configs / "train.json"}" --meta_file "{configs / "metadata.json"}"'
        f' --logging_file "{configs / "logging.conf"}" --bundle_root "{root}"'
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``list`` the shipped bundles, or ``init NAME DIR`` one into a folder."""
    parser = argparse.ArgumentParser(prog="python -m monai_equivariant.bundles", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="print the names of the shipped bundles")
    commands.add_parser("schema", help="print the path of the shipped metadata schema (verify_metadata --filepath)")
    init = commands.add_parser("init", help="copy a bundle into a folder (its bundle root)")
    init.add_argument("name", help="bundle name (see: list)")
    init.add_argument("directory", help="folder to create (or an empty one)")
    init.add_argument("--overwrite", action="store_true", help="replace the shipped files in a folder that has them")
    args = parser.parse_args(argv)
    if args.command == "list":
        print("\n".join(bundle_names()))
        return 0
    if args.command == "schema":
        print(metadata_schema())
        return 0
    try:
        root = init_bundle(args.name, args.directory, overwrite=args.overwrite)
    except (ValueError, FileExistsError, NotADirectoryError, FileNotFoundError) as error:
        parser.exit(2, f"error: {error}\n")
    print(f"bundle {args.name} written to {root}; train it with:\n  {_run_command(root)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
