"""What the bundle configs (``bundles/*/configs``) call, so that the configs keep only wiring: boolean
overrides, the run lock on a bundle root, the trained-model check, the group each network is checked against,
the baselines (augmentation, test-time group ensemble) and the printed evaluation report."""

from monai_equivariant.bundle.baselines import AUGMENTATIONS, INFERERS, augmentation, bundle_inferer
from monai_equivariant.bundle.lock import BundleRootLock, lock_bundle_root, unlock_bundle_root
from monai_equivariant.bundle.report import equivariance_errors, print_classification_report, print_segmentation_report
from monai_equivariant.bundle.workflow import (
    as_bool,
    attach_handlers,
    checked_group,
    first_samples,
    resume_checkpoint,
    trained_model,
)

__all__ = [
    "AUGMENTATIONS",
    "BundleRootLock",
    "INFERERS",
    "as_bool",
    "attach_handlers",
    "augmentation",
    "bundle_inferer",
    "checked_group",
    "equivariance_errors",
    "first_samples",
    "lock_bundle_root",
    "print_classification_report",
    "print_segmentation_report",
    "resume_checkpoint",
    "trained_model",
    "unlock_bundle_root",
]
