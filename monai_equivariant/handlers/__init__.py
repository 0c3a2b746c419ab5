"""handlers for monai_equivariant."""
