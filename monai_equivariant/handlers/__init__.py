"""Ignite handlers: equivariance measured during validation; atomic checkpoints and FROC for the bundles."""

from monai_equivariant.handlers.checkpoint import (
    AtomicCheckpointSaver,
    AtomicDiskSaver,
    CheckedCheckpointLoader,
    latest_checkpoint,
)
from monai_equivariant.handlers.equivariance import EquivarianceHandler
from monai_equivariant.handlers.froc import LUNA16FROCHandler

__all__ = [
    "AtomicCheckpointSaver",
    "AtomicDiskSaver",
    "CheckedCheckpointLoader",
    "EquivarianceHandler",
    "LUNA16FROCHandler",
    "latest_checkpoint",
]
