"""metrics for monai_equivariant."""
