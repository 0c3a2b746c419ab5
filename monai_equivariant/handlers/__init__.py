"""handlers for monai_equivariant."""

from monai_equivariant.handlers.checkpoint import AtomicCheckpointSaver, AtomicDiskSaver, latest_checkpoint

__all__ = ["AtomicCheckpointSaver", "AtomicDiskSaver", "latest_checkpoint"]
