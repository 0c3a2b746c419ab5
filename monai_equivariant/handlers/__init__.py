"""Ignite handlers: equivariance measured during validation; atomic checkpoints for the bundles."""

from monai_equivariant.handlers.checkpoint import AtomicCheckpointSaver, AtomicDiskSaver, latest_checkpoint
from monai_equivariant.handlers.equivariance import EquivarianceHandler

__all__ = ["AtomicCheckpointSaver", "AtomicDiskSaver", "EquivarianceHandler", "latest_checkpoint"]
