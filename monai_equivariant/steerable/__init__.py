"""The steerable networks (escnn, the ``steerable`` extra), fenced off from the core.

- :mod:`~monai_equivariant.steerable.escnn_compat`: the one place that imports escnn (an ImportError naming the
  extra when it is missing) and applies the package's escnn patches, explicitly and documented;
- :mod:`~monai_equivariant.steerable.unet`: :class:`SteerableUNet` and its plain-torch export
  :class:`PlainSteerableUNet` (also ``monai_equivariant.networks.nets.SteerableUNet``);
- the escnn layers are :mod:`monai_equivariant.layers.steerable`, imported only when a steerable net is built.

Every module here imports with the core requirements; escnn is needed only to build a :class:`SteerableUNet`. The
networks are loaded on first access, so :mod:`monai_equivariant.layers.steerable` can use ``escnn_compat`` without
importing ``networks`` (layers never import networks).
"""

from typing import Any

from monai_equivariant.steerable.escnn_compat import ESCNN_MISSING, apply_escnn_patches, import_escnn

__all__ = ["ESCNN_MISSING", "PlainSteerableUNet", "SteerableUNet", "apply_escnn_patches", "import_escnn"]


def __getattr__(name: str) -> Any:
    if name in ("PlainSteerableUNet", "SteerableUNet"):
        from monai_equivariant.steerable import unet

        return getattr(unet, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
