"""What a MONAI user does instead of an equivariant net, selectable in every bundle by one override:
rotation augmentation in training (``--augmentation none|rotate|group``) and a test-time group ensemble
(``--inferer simple|group_ensemble``)."""

from __future__ import annotations

import math
from collections.abc import Sequence


from monai.inferers import Inferer, SimpleInferer
from monai.transforms import RandRotated

__all__ = ["AUGMENTATIONS", "INFERERS", "augmentation", "bundle_inferer", "lateral_permutation"]

AUGMENTATIONS: dict[str, str] = {
    "none": "no augmentation (the default: the equivariant nets do not need it)",
    "rotate": "monai.transforms.RandRotated by a uniform angle in [-180°, 180°) (2D), about all three axes (3D); "
    "bilinear for images, nearest for labels, zero padding",
    "group": "monai_equivariant.transforms.RandGroupElementd: a uniformly random element of --augmentation_group "
    "(exact, no interpolation; group O covers all 24 cube rotations)",
}
INFERERS: dict[str, str] = {
    "simple": "monai.inferers.SimpleInferer: one forward pass",
    "group_ensemble": "monai_equivariant.inferers.GroupEnsembleInferer over --ensemble_group: the mean of "
    "g⁻¹·f(g·x) (segmentation) or f(g·x) (classification), exact equivariance/invariance at |G|× cost",
}


def lateral_permutation(group: object, label_permutation: Sequence[int] | None, spatial_dims: int | None = None
                        ) -> list[int] | None:
    """``label_permutation`` when ``group`` holds reflections (they swap lateral classes), else None: rotations keep
    left and right, and the transforms, inferers and heads refuse a permutation for a group without reflections."""
    if label_permutation is None:
        return None
    from monai_equivariant.groups import as_group
    from monai_equivariant.layers.lateral_head import reflections

    return [int(c) for c in label_permutation] if reflections(as_group(group, spatial_dims)).any() else None


def _choice(value: str, table: dict[str, str], option: str) -> str:
    name = str(value).strip().lower()
    if name not in table:
        raise ValueError(f"--{option} must be one of {sorted(table)}, got {value!r}")
    return name


def augmentation(
    kind: str, keys: str | Sequence[str], spatial_dims: int = 2, group: str = "p4", modes: str | Sequence[str] = "bilinear",
    label_keys: str | Sequence[str] | None = None, label_permutation: Sequence[int] | None = None,
) -> list:
    """The random transforms of ``--augmentation kind`` (a list to append to the training transforms).

    Args:
        kind: ``"none"``, ``"rotate"`` or ``"group"`` (see :data:`AUGMENTATIONS`).
        keys: the spatial keys (image, and the label in segmentation).
        spatial_dims: 2 or 3.
        group: the group of ``"group"`` (``p4``, ``p4m`` in 2D; ``O``, ``Oh``, ``D4h`` ... in 3D).
        modes: interpolation per key for ``"rotate"`` (``"nearest"`` for labels).
        label_keys, label_permutation: lateral labels: under a drawn reflection the classes of ``label_keys`` swap
            by ``label_permutation`` (e.g. ``[0, 2, 1, 3]``: left ↔ right); ignored for groups of rotations only.
    """
    kind = _choice(kind, AUGMENTATIONS, "augmentation")
    if kind == "none":
        return []
    if kind == "rotate":
        ranges = dict(range_x=math.pi) if int(spatial_dims) == 2 else dict(range_x=math.pi, range_y=math.pi, range_z=math.pi)
        return [RandRotated(keys=keys, prob=1.0, mode=modes, padding_mode="zeros", keep_size=True, **ranges)]
    try:
        from monai_equivariant.transforms import RandGroupElementd
    except ImportError as error:  # the transforms package lands separately
        raise ValueError(f"--augmentation group needs monai_equivariant.transforms.RandGroupElementd ({error})") from error
    permutation = lateral_permutation(group, label_permutation, spatial_dims)
    if permutation is None:
        return [RandGroupElementd(keys=keys, group=group, prob=1.0)]
    return [RandGroupElementd(keys=keys, group=group, prob=1.0, label_keys=label_keys, label_permutation=permutation)]


def bundle_inferer(inferer: Inferer | str, group: str = "p4", mode: str = "segmentation",
                   base: Inferer | None = None, label_permutation: Sequence[int] | None = None) -> Inferer:
    """The inferer of evaluation and inference: ``inferer`` itself when it is a MONAI ``Inferer`` object (the
    configs' default ``SimpleInferer``), or the one named by ``--inferer simple|group_ensemble``.

    Args:
        inferer: an ``Inferer``, or ``"simple"`` / ``"group_ensemble"`` (see :data:`INFERERS`).
        group: the group of the ensemble (``--ensemble_group``).
        mode: ``"segmentation"`` (average g⁻¹·f(g·x)) or ``"classification"`` (average f(g·x)).
        base: what ``"simple"`` means and what the ensemble runs for each element (default ``SimpleInferer``;
            whole volumes: a ``SlidingWindowInferer``).
        label_permutation: lateral classes of a segmentation: the ensemble swaps them back after each reflection
            (ignored for groups of rotations only).
    """
    if isinstance(inferer, Inferer):
        return inferer
    if not isinstance(inferer, str):
        raise ValueError(f"--inferer must be a MONAI Inferer or one of {sorted(INFERERS)}, got {inferer!r}")
    name = _choice(inferer, INFERERS, "inferer")
    base = SimpleInferer() if base is None else base
    if name == "simple":
        return base
    from monai_equivariant.inferers import GroupEnsembleInferer

    permutation = lateral_permutation(group, label_permutation) if mode == "segmentation" else None
    if permutation is None:
        return GroupEnsembleInferer(group, inferer=base, mode=mode)
    return GroupEnsembleInferer(group, inferer=base, mode=mode, label_permutation=permutation)


