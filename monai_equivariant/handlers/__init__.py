"""Ignite handlers: equivariance reported during validation (and saved by its own saver); atomic checkpoints and
FROC for the bundles."""

from monai_equivariant.handlers.checkpoint import (
    AtomicCheckpointSaver,
    AtomicDiskSaver,
    CheckedCheckpointLoader,
    latest_checkpoint,
)
from monai_equivariant.handlers.equivariance import (
    EquivarianceEvents,
    EquivarianceHandler,
    EquivarianceReport,
    register_equivariance_events,
)
from monai_equivariant.handlers.equivariance_saver import EquivarianceSaver
from monai_equivariant.handlers.froc import LUNA16FROCHandler

__all__ = [
    "AtomicCheckpointSaver",
    "AtomicDiskSaver",
    "CheckedCheckpointLoader",
    "EquivarianceEvents",
    "EquivarianceHandler",
    "EquivarianceReport",
    "EquivarianceSaver",
    "LUNA16FROCHandler",
    "latest_checkpoint",
    "register_equivariance_events",
]
