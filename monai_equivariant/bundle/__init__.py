"""What the bundle configs (``bundles/*/configs``) call, so that the configs keep only wiring: every override
checked before anything is written, the run lock on a bundle root, the trained-model check, the networks that
name a mismatched checkpoint, the group each network is checked against, the baselines (augmentation, test-time
group ensemble), the printed evaluation report and the clean end of a multi-process (torchrun) run."""

from monai_equivariant.bundle.baselines import AUGMENTATIONS, INFERERS, augmentation, bundle_inferer
from monai_equivariant.bundle.distributed import shutdown_distributed
from monai_equivariant.bundle.lock import BundleRootLock, lock_bundle_root, unlock_bundle_root
from monai_equivariant.bundle.overrides import (
    check_network_input,
    check_overrides,
    grid_group,
    integer,
    sample_count,
    training_samples,
)
from monai_equivariant.bundle.report import equivariance_errors, print_classification_report, print_segmentation_report
from monai_equivariant.bundle.workflow import (
    as_bool,
    attach_handlers,
    checked_group,
    first_samples,
    resume_checkpoint,
    trained_model,
)
from monai_equivariant.bundle.weights import bundle_network, weights_group_order

__all__ = [
    "AUGMENTATIONS",
    "BundleRootLock",
    "INFERERS",
    "as_bool",
    "attach_handlers",
    "augmentation",
    "bundle_inferer",
    "bundle_network",
    "check_network_input",
    "check_overrides",
    "checked_group",
    "equivariance_errors",
    "first_samples",
    "grid_group",
    "integer",
    "lock_bundle_root",
    "print_classification_report",
    "print_segmentation_report",
    "resume_checkpoint",
    "sample_count",
    "shutdown_distributed",
    "trained_model",
    "training_samples",
    "unlock_bundle_root",
    "weights_group_order",
]
