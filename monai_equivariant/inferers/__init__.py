"""MONAI inferers over a group: the test-time group ensemble (any net made exactly equivariant at |G|× cost)."""

from monai_equivariant.inferers.group_ensemble import GroupEnsembleInferer

__all__ = ["GroupEnsembleInferer"]
