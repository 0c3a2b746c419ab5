"""Packaging: the metadata and requirements are in setup.cfg. This file only adds the bundles and the data sample.

The MONAI bundles stay at the repository root (``bundles/``, the model-zoo layout); they ship inside the package
as ``monai_equivariant/_bundles/`` (a data folder mapped onto ``bundles/``), which
``python -m monai_equivariant.bundles init <name> DIR`` copies out.
"""

from setuptools import find_packages, setup

BUNDLE_DATA = "monai_equivariant._bundles"
"""The data folder inside the installed package that holds a copy of ``bundles/`` (no Python code in it)."""

setup(
    packages=find_packages(include=["monai_equivariant", "monai_equivariant.*"]) + [BUNDLE_DATA],
    package_dir={BUNDLE_DATA: "bundles"},
    package_data={
        BUNDLE_DATA: ["*/configs/*", "*/docs/*", "*/LICENSE", "*/large_files.yml", "schema/*.json"],
        "monai_equivariant.data": ["bbbc038_sample/*"],  # the real nuclei image, its labels and provenance
    },
    include_package_data=False,
)
