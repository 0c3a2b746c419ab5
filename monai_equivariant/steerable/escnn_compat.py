"""The one place that adapts escnn to this package: importing it (with an error naming the ``steerable`` extra) and
the two patches it needs, applied explicitly by :func:`import_escnn`.

escnn itself is never edited; each patch changes one module-level reference or one class attribute, and is
idempotent:

- :func:`use_exact_svd_in_escnn`: escnn's null-space solver calls scikit-learn's ``randomized_svd`` on an
  ``np.matrix`` when scikit-learn is installed, which recent scikit-learn refuses (``TypeError: np.matrix is not
  supported``; D_N with N = 8, 12). It then takes the path it takes without scikit-learn: SciPy's exact SVD
  (deterministic, as without scikit-learn).
- :func:`identity_hash_for_escnn_basis_modules`: escnn's basis-expansion/-sampler modules hash and compare by
  content (reading their buffers through NumPy). torch hashes and compares modules in ``named_modules()`` (a memo
  set): content hashing is slow, would merge two layers whose bases are equal, and fails under
  ``torch.export``/``torch.compile`` where the buffers are fake tensors (no data). They get the identity
  ``__hash__``/``__eq__`` every other ``nn.Module`` has.

This module imports escnn only inside its functions, so it imports with the core requirements.
"""

from __future__ import annotations

from types import ModuleType

import torch.nn as nn

__all__ = ["ESCNN_MISSING", "apply_escnn_patches", "identity_hash_for_escnn_basis_modules", "import_escnn",
           "use_exact_svd_in_escnn"]

ESCNN_MISSING = (
    "the steerable networks (SteerableUNet, monai_equivariant.layers.steerable) need escnn, which the 'steerable' "
    "extra provides: run `python -m monai_equivariant.steerable_install` (no compiler needed: pip install "
    "'monai_equivariant[steerable]' from a checkout or wheel, then pip install --no-deps escnn; escnn needs numpy<2). "
    "See docs/installation.md"
)


def import_escnn() -> ModuleType:
    """``escnn`` with :func:`apply_escnn_patches` applied.

    Raises:
        ImportError naming the ``steerable`` extra and how to install it, when escnn is absent or broken (e.g. its
        lie_learn under numpy 2).
    """
    try:
        import escnn
        import escnn.gspaces
        import escnn.nn
    except ImportError as error:
        raise ImportError(f"{ESCNN_MISSING}. ({type(error).__name__}: {error})") from error
    apply_escnn_patches()
    return escnn


def apply_escnn_patches() -> None:
    """Apply both patches of the module docstring (idempotent)."""
    use_exact_svd_in_escnn()
    identity_hash_for_escnn_basis_modules()


def use_exact_svd_in_escnn() -> None:
    """escnn's null-space solver takes SciPy's exact SVD instead of scikit-learn's ``randomized_svd``."""
    from escnn.group import _numerical

    if getattr(_numerical, "randomized_svd", None) is not None:
        _numerical.randomized_svd = None


def identity_hash_for_escnn_basis_modules() -> None:
    """escnn's basis modules hash and compare by identity, as every other ``nn.Module``."""
    from escnn.nn.modules import basismanager as bm

    for cls in (
        bm.BlocksBasisExpansion,
        bm.SingleBlockBasisExpansion,
        getattr(bm, "BlocksBasisSampler", None),
        getattr(bm, "SingleBlockBasisSampler", None),
    ):
        if cls is not None and cls.__hash__ is not nn.Module.__hash__:
            cls.__hash__ = nn.Module.__hash__  # type: ignore[method-assign]
            cls.__eq__ = nn.Module.__eq__  # type: ignore[method-assign]
