"""Installing the package as a user would (issue 24): requirements are exactly what the package imports, the
wheel and sdist carry the bundles and the LICENSE, ``python -m monai_equivariant.bundles init`` puts a bundle
in a folder, a steerable net without escnn names the extra; and (``-m slow``) the wheel installs into fresh
virtualenvs with no compiler on PATH -- the core with numpy 2, and the steerable extra's no-compiler path."""

from __future__ import annotations

import ast
import configparser
import functools
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

import pytest

from monai_equivariant import bundles

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "monai_equivariant"
BUNDLE_NAMES = ["histopathology_classification", "nodule_classification", "organ_segmentation", "polyp_segmentation"]
EXTRA_MODULES = {"monai_equivariant/layers/steerable.py": "steerable"}
"""Modules that may import an extra's package at module level; nothing imports them at module level."""
NOT_IMPORTED = {
    "fire": "python -m monai.bundle, the bundles' command line",
    "jsonschema": "monai.bundle verify_metadata",
    "tqdm": "ignite.handlers.ProgressBar in the bundle configs",
    "onnxscript": "torch.onnx.export(dynamo=True), behind utils.export's ONNX path (onnx extra)",
    "lie-learn": "escnn's requirement (steerable extra: escnn itself is installed with --no-deps)",
    "joblib": "escnn's requirement (steerable extra)",
    "pymanopt": "escnn's requirement (steerable extra)",
    "autograd": "escnn's requirement (steerable extra)",
}
"""Requirements the package does not import itself, each with what needs it."""
TOOL_EXTRAS = ("test", "docs", "dev")
"""Extras for working on the repository, not for using the package (not compared with the imports)."""


def canonical(name: str) -> str:
    """PEP 503 normalised distribution name: ``Lie_Learn`` -> ``lie-learn``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_names(lines: str) -> set[str]:
    """Distribution names of a setup.cfg requirement list (comments and ``%(extra)s`` references skipped)."""
    names = set()
    for line in lines.splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("%("):
            names.add(canonical(re.match(r"[A-Za-z0-9._-]+", line).group(0)))
    return names


def setup_cfg() -> configparser.ConfigParser:
    cfg = configparser.ConfigParser(interpolation=None)
    cfg.read(REPO / "setup.cfg")
    return cfg


def declared() -> tuple[set[str], dict[str, set[str]]]:
    """(install_requires names, {extra: names}) from setup.cfg."""
    cfg = setup_cfg()
    extras = {name: requirement_names(value) for name, value in cfg["options.extras_require"].items()}
    return requirement_names(cfg["options"]["install_requires"]), extras


@functools.lru_cache(maxsize=None)
def _providers() -> dict[str, list[str]]:
    return importlib.metadata.packages_distributions()


def distribution_of(module: str) -> str:
    """The distribution that provides top-level ``module`` (installed metadata; else the module's own name)."""
    providers = _providers().get(module)
    return canonical(providers[0] if providers else module)


def imports(path: Path) -> list[tuple[str, bool]]:
    """(dotted module, at module level?) for every absolute import in ``path``; ``from m import n`` gives ``m``
    and ``m.n``. 'Module level' is outside any function (a ``try`` or class body runs at import time too)."""
    found = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import):
                found.extend((alias.name, not in_function) for alias in child.names)
            elif isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
                found.append((child.module, not in_function))
                found.extend((f"{child.module}.{alias.name}", not in_function) for alias in child.names)
            visit(child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))

    visit(ast.parse(path.read_text(), filename=str(path)), False)
    return found


def third_party_imports(path: Path) -> list[tuple[str, bool]]:
    """(top-level module, at module level?) of the imports in ``path`` that are neither stdlib nor the package."""
    tops = [(name.split(".")[0], module_level) for name, module_level in imports(path)]
    return [(top, level) for top, level in tops if top not in sys.stdlib_module_names
            and top not in ("__future__", "monai_equivariant")]


def test_requirements_are_exactly_what_the_package_imports():
    """install_requires + the user-facing extras (+ escnn, installed by steerable_install) name the distribution
    of every module the package imports, and nothing else but the requirements named in NOT_IMPORTED."""
    core, extras = declared()
    user_extras = set().union(*(names for name, names in extras.items() if name not in TOOL_EXTRAS))
    from monai_equivariant.steerable_install import ESCNN

    requirements = core | user_extras | requirement_names(ESCNN)
    imported = {distribution_of(top) for path in PACKAGE.rglob("*.py") for top, _ in third_party_imports(path)}
    assert imported - requirements == set(), f"imported but not declared in setup.cfg: {sorted(imported - requirements)}"
    unexplained = requirements - imported - set(NOT_IMPORTED)
    assert unexplained == set(), f"declared in setup.cfg but never imported (nor in NOT_IMPORTED): {sorted(unexplained)}"
    assert set(NOT_IMPORTED) <= requirements, f"NOT_IMPORTED names undeclared: {sorted(set(NOT_IMPORTED) - requirements)}"
    assert "nibabel" in requirements and "scikit-image" not in requirements  # NIfTI: data/decathlon.py


def test_extras_are_imported_only_where_they_are_needed():
    """A package of an extra is imported at module level only in EXTRA_MODULES, and those modules are imported
    at module level by no other module: ``import monai_equivariant`` and every other module need only the core."""
    core, extras = declared()
    wrong = []
    for path in PACKAGE.rglob("*.py"):
        relative = str(path.relative_to(REPO))
        for top, module_level in third_party_imports(path):
            dist = distribution_of(top)
            if module_level and dist not in core and relative not in EXTRA_MODULES:
                wrong.append(f"{relative}: {top} ({dist}) at module level")
        dotted = {m.replace("/", ".")[: -len(".py")] for m in EXTRA_MODULES}
        for module in {name for name, module_level in imports(path) if module_level} & dotted:
            wrong.append(f"{relative}: imports {module} at module level")
    assert not wrong, "core modules would need an extra:\n" + "\n".join(sorted(set(wrong)))


def _config_modules(value) -> set[str]:
    """Top-level module names a bundle config needs: ``$import x`` / ``$from x import`` and dotted ``_target_``s."""
    found = set()
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "_target_" and isinstance(item, str) and "." in item and not item.startswith(("$", "@")):
                found.add(item.split(".")[0])
            found |= _config_modules(item)
    elif isinstance(value, list):
        for item in value:
            found |= _config_modules(item)
    elif isinstance(value, str):
        match = re.match(r"\$\s*(?:import|from)\s+([A-Za-z_][\w]*)", value)
        if match:
            found.add(match.group(1))
    return found


def test_bundle_configs_need_only_core_requirements():
    """Every module a shipped bundle config imports or targets is the stdlib, the package, or a core requirement
    (ignite's ProgressBar, which the configs use, needs tqdm: also core)."""
    core, _ = declared()
    modules = set()
    for path in (REPO / "bundles").glob("*/configs/*.json"):
        modules |= _config_modules(json.loads(path.read_text()))
    outside = {m for m in modules - {"monai_equivariant"} if m not in sys.stdlib_module_names
               and distribution_of(m) not in core}
    assert "ignite" in modules and "tqdm" in core
    assert not outside, f"bundle configs need modules outside install_requires: {sorted(outside)}"


def test_steerable_net_without_escnn_raises_import_error_naming_the_extra(monkeypatch):
    """With escnn not importable, building a SteerableUNet raises ImportError naming the steerable extra and
    the command that installs it (``sys.modules["escnn"] = None`` makes ``import escnn`` fail, as when it is not
    installed; the steerable module is re-imported and both entries are restored afterwards)."""
    from monai_equivariant.networks.nets import SteerableUNet

    monkeypatch.setitem(sys.modules, "escnn", None)
    monkeypatch.delitem(sys.modules, "monai_equivariant.layers.steerable", raising=False)
    import monai_equivariant.layers as layers  # an earlier test's import also left the module as an attribute,

    monkeypatch.delattr(layers, "steerable", raising=False)  # which `from ... import steerable` reads first
    with pytest.raises(ImportError) as caught:
        SteerableUNet(2, 1, 1, channels=(2, 4))
    message = str(caught.value)
    assert "'steerable' extra" in message and "python -m monai_equivariant.steerable_install" in message, message
    assert "monai_equivariant.layers.steerable" not in sys.modules  # a failed import leaves nothing half-done


def test_steerable_install_runs_the_extra_then_escnn_without_dependencies():
    """The helper's two pip commands: the [steerable] extra's requirements as the installed metadata declares
    them (equal to setup.cfg's), then escnn with --no-deps (its py3nj needs a Fortran compiler)."""
    from monai_equivariant import steerable_install

    first, second = steerable_install.install_commands("python")
    _, extras = declared()
    assert first[:4] == ["python", "-m", "pip", "install"]
    assert requirement_names("\n".join(first[4:])) == extras["steerable"] and "numpy<2" in first
    assert second == ["python", "-m", "pip", "install", "--no-deps", steerable_install.ESCNN]


def test_steerable_install_refuses_an_install_without_the_extra(monkeypatch):
    """Imported from a wheel install whose metadata predates the extra (or a stale egg-info shadowing it), the
    helper says to reinstall instead of running ``pip install`` with nothing to install."""
    from monai_equivariant import steerable_install

    monkeypatch.setattr(steerable_install, "_checkout_requirements", lambda: None)
    monkeypatch.setattr(importlib.metadata, "requires", lambda name: ["torch>=2.1", "onnx; extra == 'onnx'"])
    with pytest.raises(RuntimeError, match=r"declares no \[steerable\] extra.*reinstall"):
        steerable_install.install_commands("python")


def test_bundles_init_copies_a_shipped_bundle(tmp_path, capsys):
    """``python -m monai_equivariant.bundles init NAME DIR`` writes the bundle's shipped files to DIR and prints
    the run command; it refuses an unknown name (listing the names) and a folder that holds a bundle already."""
    assert bundles.bundle_names() == BUNDLE_NAMES
    assert bundles.main(["init", "polyp_segmentation", str(tmp_path / "polyp")]) == 0
    assert "python -m monai.bundle run" in capsys.readouterr().out
    source = bundles.bundle_path("polyp_segmentation")
    shipped = sorted(str(p.relative_to(source)) for name in bundles.BUNDLE_FILES for p in
                     ([source / name] if (source / name).is_file() else (source / name).rglob("*")) if p.is_file())
    written = sorted(str(p.relative_to(tmp_path / "polyp")) for p in (tmp_path / "polyp").rglob("*") if p.is_file())
    assert written == shipped and "configs/train.json" in written and "LICENSE" in written
    with pytest.raises(FileExistsError, match="configs"):
        bundles.init_bundle("polyp_segmentation", tmp_path / "polyp")
    with pytest.raises(ValueError, match="unknown bundle 'polyp'.*polyp_segmentation"):
        bundles.init_bundle("polyp", tmp_path / "other")
    assert bundles.metadata_schema().is_file()


# ---------------------------------------------------------------- the wheel and the sdist


def _repository_files() -> list[str]:
    """The files of this checkout that git tracks or would track (untracked, not ignored)."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True,
                            text=True, check=True).stdout.splitlines()
    return sorted(f for f in listed if (REPO / f).is_file())


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, Path]:
    """The sdist, and the wheel built from that sdist (``python -m build``), of a copy of this checkout's files
    (so nothing is written into the repository): {"sdist": path, "wheel": path, "seconds": float}."""
    root = tmp_path_factory.mktemp("build")
    source = root / "source"
    for name in _repository_files():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, source / name)
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "build", "--outdir", str(root / "dist"), str(source)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (sdist,), (wheel,) = (root / "dist").glob("*.tar.gz"), (root / "dist").glob("*.whl")
    return {"sdist": sdist, "wheel": wheel, "seconds": time.perf_counter() - start}


def test_wheel_holds_the_bundles_and_the_license(built):
    """The wheel (built from the sdist) carries every shipped bundle file under monai_equivariant/_bundles/,
    the metadata schema, the BBBC038 sample with its provenance, the LICENSE, and no run outputs."""
    names = set(zipfile.ZipFile(built["wheel"]).namelist())
    bundle_files = [f for f in _repository_files() if f.startswith("bundles/") and f != "bundles/.gitignore"]
    missing = [f for f in bundle_files if "monai_equivariant/_" + f not in names]
    assert not missing, f"bundle files missing from the wheel: {missing}"
    assert "monai_equivariant/_bundles/schema/meta_schema.json" in names
    sample = {f"monai_equivariant/data/bbbc038_sample/{f}" for f in ("img2d.tif", "mask2d.tif", "README.md")}
    assert sample <= names, f"the BBBC038 sample (image, labels, provenance) missing: {sorted(sample - names)}"
    licenses = [n for n in names if n.endswith(".dist-info/licenses/LICENSE")]
    assert licenses, "LICENSE missing from the wheel"
    assert "Apache License" in zipfile.ZipFile(built["wheel"]).read(licenses[0]).decode()
    assert not [n for n in names if n.startswith("monai_equivariant/_bundles/") and ("/models/" in n or "/runs/" in n)]


def test_sdist_holds_every_repository_file(built):
    """The sdist holds every file of the checkout (the package, bundles/, and what the tests read: tests/,
    tutorials/, docs/, benchmarks/), the LICENSE and setup.py."""
    with tarfile.open(built["sdist"]) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    missing = [f for f in _repository_files() if f not in names]
    assert not missing, f"files missing from the sdist: {missing}"
    assert {"LICENSE", "setup.py", "setup.cfg", "MANIFEST.in", "tests/test_install.py"} <= names
    assert "Apache License" in (REPO / "LICENSE").read_text() and len((REPO / "LICENSE").read_text()) > 10000


# ---------------------------------------------------------------- fresh virtualenvs, no compiler (slow)

CORE_CHECK = r"""
import importlib, pathlib, pkgutil, subprocess, sys
import numpy, torch
import monai_equivariant
from monai_equivariant.layers import GroupConv, LiftingConv
from monai_equivariant.networks.nets import P4UNet, SteerableUNet
from monai_equivariant.utils import assert_equivariant

assert int(numpy.__version__.split(".")[0]) >= 2, numpy.__version__
assert "site-packages" in monai_equivariant.__file__, monai_equivariant.__file__  # the wheel, not the checkout
for module in pkgutil.walk_packages(monai_equivariant.__path__, "monai_equivariant."):
    if module.name != "monai_equivariant.layers.steerable":  # the steerable extra's module
        importlib.import_module(module.name)  # every other module imports with the core requirements
torch.manual_seed(0)
net = P4UNet(spatial_dims=2, in_channels=3, out_channels=2, channels=(4, 8, 16)).eval()
x = torch.randn(2, 3, 32, 32)
with torch.no_grad():
    y = net(x)
    assert y.shape == (2, 2, 32, 32), y.shape
    # float32 round-off: each conv sums its fan-in (<= 3*3*16*4 = 576 terms) in another order on the rotated
    # input, about sqrt(576) = 24 eps relative; 100 eps per conv layer, relative to max |output|, bounds that
    layers = sum(isinstance(m, (GroupConv, LiftingConv)) for m in net.modules())
    errors = assert_equivariant(net, "p4", x, rtol=100 * layers * torch.finfo(torch.float32).eps)
print("p4 errors", [f"{e:.1e}" for e in errors.tolist()], "numpy", numpy.__version__, "torch", torch.__version__)
try:
    SteerableUNet(2, 1, 1, channels=(2, 4))
    raise SystemExit("SteerableUNet built without escnn")
except ImportError as error:
    assert "'steerable' extra" in str(error), error
work = pathlib.Path(sys.argv[1])
subprocess.run([sys.executable, "-m", "monai_equivariant.bundles", "init", "polyp_segmentation", str(work / "polyp")],
               check=True)
configs = work / "polyp" / "configs"
subprocess.run([sys.executable, "-m", "monai.bundle", "run", "--config_file", str(configs / "train.json"),
                "--meta_file", str(configs / "metadata.json"), "--logging_file", str(configs / "logging.conf"),
                "--bundle_root", str(work / "polyp"), "--image_size", "32", "--synthetic_samples", "12",
                "--network_channels", "[4,8]", "--epochs", "1", "--batch_size", "4", "--progress", "False"],
               check=True, cwd=work)
assert (work / "polyp" / "models" / "model.pt").is_file()
print("bundle run from init-ed files: models/model.pt written")
"""

STEERABLE_CHECK = r"""
import numpy, sklearn, torch
from monai_equivariant.networks.nets import SteerableUNet
from monai_equivariant.utils import assert_equivariant

torch.manual_seed(0)
net = SteerableUNet(2, 1, 2, channels=(2, 4), num_rotations=8, reflections=True).eval()
x = torch.randn(2, 1, 16, 16)
with torch.no_grad():
    # exact under the 90-degree rotations and flips of D8 that map the grid onto itself (float32 round-off,
    # relative to max |output|; the same bound as the steerable tests of the suite)
    errors = assert_equivariant(net, "p4m", x, rtol=1e-4)
print("p4m errors", [f"{e:.1e}" for e in errors.tolist()], "numpy", numpy.__version__, "sklearn", sklearn.__version__)
"""


def _no_compiler_env(venv: Path) -> dict[str, str]:
    """The environment of a user without a compiler: PATH holds only the virtualenv's bin, and CC/CXX/FC say
    ``false``; pip's own configuration (where torch comes from) is kept."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(PATH=str(venv / "bin"), CC="false", CXX="false", FC="false", F77="false", F90="false",
               OMP_NUM_THREADS="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    for compiler in ("cc", "gcc", "gfortran", "f95", "c++"):
        assert shutil.which(compiler, path=env["PATH"]) is None, compiler
    return env


def _fresh_venv(root: Path) -> tuple[Path, dict[str, str]]:
    """A new virtualenv under ``root`` with torch taken as scripts/setup_env.sh takes it (a wheel kept locally
    by pip's configuration, else the index's)."""
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    env = _no_compiler_env(venv)
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-index", "--no-deps", "torch"],
                   env=env, timeout=900)  # may find none: then the wheel's requirement takes torch from the index
    return venv, env


def _pip(venv: Path, env: dict[str, str], *args: str) -> None:
    result = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", *args], env=env,
                            capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def _run(venv: Path, env: dict[str, str], script: str, work: Path) -> str:
    (work / "check.py").write_text(script)
    result = subprocess.run([str(venv / "bin" / "python"), str(work / "check.py"), str(work)], env=env, cwd=work,
                            capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return result.stdout


@pytest.mark.slow
def test_wheel_installs_with_numpy2_and_no_compiler(built, tmp_path):
    """The wheel in a fresh virtualenv with numpy 2, no compiler on PATH: every module but the steerable one
    imports, a P4UNet forward is exactly p4-equivariant, a steerable net asks for its extra, and the polyp
    bundle trains (``monai.bundle run``) from ``python -m monai_equivariant.bundles init``-ed files."""
    start = time.perf_counter()
    venv, env = _fresh_venv(tmp_path)
    _pip(venv, env, f"{built['wheel']}", "numpy>=2")
    installed = time.perf_counter() - start
    out = _run(venv, env, CORE_CHECK, tmp_path)
    assert "models/model.pt written" in out
    print(f"\ncore: install {installed:.0f} s, checks {time.perf_counter() - start - installed:.0f} s\n{out}")


@pytest.mark.slow
def test_wheel_steerable_extra_installs_with_no_compiler(built, tmp_path):
    """The wheel, then ``python -m monai_equivariant.steerable_install`` (the [steerable] extra, escnn without
    py3nj) and scikit-learn (escnn takes another SVD path with it) in a fresh virtualenv with no compiler on PATH:
    a SteerableUNet (D8) is exactly equivariant under p4m."""
    start = time.perf_counter()
    venv, env = _fresh_venv(tmp_path)
    _pip(venv, env, f"{built['wheel']}", "scikit-learn")
    result = subprocess.run([str(venv / "bin" / "python"), "-m", "monai_equivariant.steerable_install"], env=env,
                            capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    installed = time.perf_counter() - start
    out = _run(venv, env, STEERABLE_CHECK, tmp_path)
    assert "p4m errors" in out
    print(f"\nsteerable: install {installed:.0f} s, checks {time.perf_counter() - start - installed:.0f} s\n{out}")
