"""monai_equivariant: group-equivariant CNNs (p4, p4m, SE(2,N), cube groups) as MONAI components."""

__version__ = "0.1.0"

from monai_equivariant import groups, layers, networks, utils  # noqa: E402

__all__ = ["groups", "layers", "networks", "utils", "__version__"]
