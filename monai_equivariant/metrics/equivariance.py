"""How far a network is from commuting with rotations, as MONAI metrics: :func:`compute_equivariance` measures one
batch (as ``monai.metrics.compute_dice``), :class:`EquivarianceMetric` is the ``CumulativeIterationMetric`` over
batches (as ``DiceMetric``). Both are thin users of one :class:`~monai_equivariant.metrics.EquivarianceHelper`
(options validated once, masks cached by shape), as ``DiceHelper`` is under ``compute_dice`` and ``DiceMetric``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from monai.metrics import CumulativeIterationMetric
from monai.utils import MetricReduction, convert_to_numpy, convert_to_tensor

from monai_equivariant.groups import Group
from monai_equivariant.metrics.equivariance_helper import (
    CLASSIFICATION_MEASURES,
    DEFAULT_ANGLES_2D,
    SEGMENTATION_MEASURES,
    EquivarianceHelper,
    Transformations,
    equivariance_transformations,
    reduce_metric,
    valid_region,
)

__all__ = [
    "EquivarianceMetric",
    "Transformations",
    "compute_equivariance",
    "equivariance_transformations",
    "SEGMENTATION_MEASURES",
    "CLASSIFICATION_MEASURES",
    "DEFAULT_ANGLES_2D",
    "valid_region",
]


def compute_equivariance(
    network: Callable[[torch.Tensor], torch.Tensor],
    images: torch.Tensor,
    angles: Sequence[float] | None = None,
    group: str | Group | None = None,
    *,
    task: str = "auto",
    activation: str | None = "sigmoid",
    threshold: float = 0.5,
    include_background: bool = True,
    ignore_empty: bool = True,
    valid_region: str = "rotated",
    margin: int = 0,
    mode: str = "bilinear",
    input_padding: str = "zeros",
    inferer: Callable[..., torch.Tensor] | None = None,
) -> dict[str, torch.Tensor]:
    """Compare g·f(x) with f(g·x) for a batch of images, per image and transformation.

    The function under :class:`EquivarianceMetric` (as ``monai.metrics.compute_dice`` is under ``DiceMetric``);
    arguments as there. ``network`` runs in eval mode without gradients (modules are switched, and every
    submodule's mode restored afterwards), through ``inferer(images, network)`` when an inferer is given.

    Args:
        network: ``(B, C, *spatial) -> (B, K, *spatial)`` (segmentation) or ``(B, K)`` (classification).
        images: (B, C, *spatial) float tensor.

    Returns:
        ``{measure: (B, A) float tensor}`` for :data:`SEGMENTATION_MEASURES` or :data:`CLASSIFICATION_MEASURES`,
        A = number of angles / group elements (see :func:`equivariance_transformations` for their order).
        NaN where an output is non-finite (with a warning), and Dice/IoU NaN where both masks are empty and
        ``ignore_empty`` (MONAI's ``DiceMetric`` rule; with ``ignore_empty=False`` they count as 1).
    """
    helper = EquivarianceHelper(
        angles=angles, group=group, task=task, activation=activation, threshold=threshold,
        include_background=include_background, ignore_empty=ignore_empty, valid_region=valid_region,
        margin=margin, mode=mode, input_padding=input_padding,
    )
    return helper(network, images, inferer)


class EquivarianceMetric(CumulativeIterationMetric):
    """Similarity of g·f(x) and f(g·x) per image and transformation g, inside the region valid in both frames.

    In 2D the transformations are rotations by ``angles`` (degrees; default 0°..90° in 5° steps) with
    :func:`monai_equivariant.groups.rotate` (exact at multiples of 90°, bilinear otherwise). With ``group``
    (e.g. ``"p4m"``, or ``"O"``, the default in 3D: the 24 cube rotations) they are the group's elements,
    applied with ``Group.transform``, and are named ``g0``, ``g1``… (``axis == "element"``), not angles.

    Unlike MONAI's metrics, whose ``y_pred`` is a network output, this metric's first argument is the *images*:
    it needs f(x) and f(g·x), so it runs the network itself (``network``, given here or per call) and needs
    no ground truth (``y`` is ignored).

    The network runs in eval mode without gradients: a module in train mode is switched to eval for the
    measurement and back afterwards (each submodule's own mode restored), so batch statistics are neither used
    nor updated. A plain function wrapping a module cannot be switched: pass the module (and an ``inferer``).

    Segmentation networks (output ``(B, K, *spatial)``): ``activation`` turns outputs into probabilities
    (sigmoid, or softmax), masks are ``probability > threshold`` (sigmoid/None) or the one-hot argmax (softmax);
    measures :data:`SEGMENTATION_MEASURES` pooled over the kept channels and the valid pixels. Where both masks
    are empty, Dice and IoU are NaN and left out of the means (``ignore_empty=True``, MONAI's ``DiceMetric``
    default) or 1 (``ignore_empty=False``). Classifiers (output ``(B, K)``, which must be invariant): measures
    :data:`CLASSIFICATION_MEASURES`. Non-finite outputs never score as equivariant: every measure of that
    (image, transformation) is NaN, with a warning.

    Valid region (decision): the comparison happens in the rotated frame, where both rotate(f(x)) and
    f(rotate(x)) are only backed by real data at the pixels whose source lies inside the original image.
    That set is exactly ``rotate(ones) >= 1 - 1e-4`` (same ``rotate``, same interpolation), so it adapts to
    every angle, is the whole image at 90° multiples, and never counts the zero-padded corners
    (see :func:`valid_region`; ``valid_region="disk"`` uses the inscribed disk, ``margin`` erodes further).

    Args:
        network: callable ``(B, C, *spatial) -> output``; may also be given per call.
        angles: 2D rotation angles in degrees.
        group: a group (name) whose elements are used instead of angles.
        task: ``"auto"`` (from the output's shape), ``"segmentation"`` or ``"classification"``.
        activation: ``"sigmoid"``, ``"softmax"`` or None (outputs are already probabilities).
        threshold: binarisation threshold for sigmoid/None.
        include_background: with softmax, whether channel 0 counts in Dice/IoU/MAD.
        ignore_empty: Dice/IoU of two empty masks: NaN, skipped by the means (True) or 1 (False).
        valid_region: ``"rotated"``, ``"disk"`` or ``"all"``.
        margin: pixels eroded from the valid region.
        mode: interpolation of ``rotate`` (``"bilinear"`` or ``"nearest"``).
        input_padding: how the rotated *input* is filled where it comes from outside the image: ``"zeros"``
            (default; the black corners a rotation brings in, which networks see and react to), ``"border"`` or
            ``"reflection"`` (the network sees plausible tissue there). The output comparison and the valid
            region are unchanged.
        reduction: default of :meth:`aggregate` (MONAI ``MetricReduction``, NaN skipped): ``"mean_batch"`` =
            per angle/element (a curve), ``"none"`` = per image and angle/element, ``"mean"`` = one number.
        inferer: optional ``inferer(images, network)`` (e.g. a MONAI ``SlidingWindowInferer``).

    Example::

        metric = EquivarianceMetric(net, angles=range(0, 95, 5))
        for batch in loader:
            metric(batch["image"])
        curves = metric.aggregate()            # {"dice": (19,), "iou": (19,), "mad": (19,)}
        per_image = metric.aggregate("none")   # {"dice": (N, 19), ...}
    """

    def __init__(
        self,
        network: Callable[[torch.Tensor], torch.Tensor] | None = None,
        angles: Sequence[float] | None = None,
        group: str | Group | None = None,
        *,
        task: str = "auto",
        activation: str | None = "sigmoid",
        threshold: float = 0.5,
        include_background: bool = True,
        ignore_empty: bool = True,
        valid_region: str = "rotated",
        margin: int = 0,
        mode: str = "bilinear",
        input_padding: str = "zeros",
        reduction: MetricReduction | str = MetricReduction.MEAN_BATCH,
        inferer: Callable[..., torch.Tensor] | None = None,
    ) -> None:
        super().__init__()
        self.helper = EquivarianceHelper(
            angles=angles, group=group, task=task, activation=activation, threshold=threshold,
            include_background=include_background, ignore_empty=ignore_empty, valid_region=valid_region,
            margin=margin, mode=mode, input_padding=input_padding,
        )
        self.network = network
        self.inferer = inferer
        self.reduction = reduction
        self.spatial_dims: int | None = None
        self.resolved_task: str | None = None
        self.transformations: Transformations | None = None

    # ------------------------------------------------------------------------------------------------
    # what is compared (known after the first batch)

    def _known(self) -> Transformations:
        if self.transformations is None:
            raise RuntimeError("the transformations depend on the images' dimension: call the metric first")
        return self.transformations

    @property
    def axis(self) -> str:
        """``"angle"`` (2D rotations, degrees) or ``"element"`` (a group's elements)."""
        return self._known().axis

    @property
    def axis_values(self) -> list[float]:
        """The x values of the curves: angles in degrees, or element indices."""
        return list(self._known().values)

    @property
    def labels(self) -> list[str]:
        """One name per transformation: ``"45"``, ``"22.5"`` (angles) or ``"g0"``, ``"g7"`` (group elements)."""
        return list(self._known().labels)

    @property
    def angles(self) -> list[float] | None:
        """The rotation angles in degrees, or None when the transformations are a group's elements."""
        return list(self._known().values) if self._known().axis == "angle" else None

    @property
    def elements(self) -> list[int] | None:
        """The group element indices, or None when the transformations are rotation angles."""
        t = self._known()
        return [int(v) for v in t.values] if t.axis == "element" else None

    @property
    def measures(self) -> tuple[str, ...]:
        """Names of the buffered measures (known after the first call, or when ``task`` is set)."""
        task = self.resolved_task or self.helper.task
        if task == "auto":
            raise RuntimeError("the task is detected from the first batch: call the metric first")
        return self.helper.measures(task)

    def _setup(self, spatial_dims: int) -> None:
        if self.spatial_dims is not None and spatial_dims != self.spatial_dims:
            raise ValueError(
                f"this metric was set up for {self.spatial_dims}D images, got {spatial_dims}D; reset() "
                "does not change that: create a new metric"
            )
        self.transformations = self.helper.transformations(spatial_dims)
        self.spatial_dims = spatial_dims

    # ------------------------------------------------------------------------------------------------
    # computation

    def __call__(  # type: ignore[override]
        self, images: Any, y: Any = None, network: Callable | None = None, **kwargs: Any
    ) -> Any:
        """Buffer the measures of a batch of images (B, C, *spatial) (or a list of (C, *spatial)).

        Returns a list with one (B, n_transformations) tensor per measure (see :attr:`measures`).
        ``y`` is accepted for MONAI's call signature and ignored (no ground truth is needed).
        """
        if isinstance(images, (list, tuple)) and len({tuple(i.shape) for i in images}) == 1:
            images = torch.stack([convert_to_tensor(i, track_meta=False) for i in images])  # one forward pass
        return super().__call__(images, None, network=network, **kwargs)

    def _compute_tensor(  # type: ignore[override]
        self, y_pred: torch.Tensor, y: torch.Tensor | None = None, network: Callable | None = None
    ) -> list[torch.Tensor]:
        net = network if network is not None else self.network
        if net is None:
            raise ValueError("EquivarianceMetric needs a network: pass it to the constructor or to the call")
        self._setup(y_pred.dim() - 2)
        results = self.helper(net, y_pred, self.inferer)
        task = "segmentation" if "dice" in results else "classification"
        if self.resolved_task not in (None, task):
            raise ValueError(f"earlier batches were {self.resolved_task}, this one is {task}")
        self.resolved_task = task
        return [results[name] for name in self.measures]

    # ------------------------------------------------------------------------------------------------
    # results

    def aggregate(  # type: ignore[override]
        self, reduction: MetricReduction | str | None = None
    ) -> dict[str, torch.Tensor]:
        """Reduce the buffers, NaN skipped: ``{measure: tensor}`` with (A,) for ``"mean_batch"`` (the default;
        NaN where every image is NaN), (N, A) for ``"none"``, a one-element tensor for ``"mean"``."""
        buffers = self.get_buffer()
        if buffers is None:
            raise RuntimeError("EquivarianceMetric has no results: call it on a batch of images first")
        if isinstance(buffers, torch.Tensor):
            buffers = [buffers]
        reduction = self.reduction if reduction is None else reduction
        return {name: reduce_metric(values, reduction) for name, values in zip(self.measures, buffers)}

    def table(self) -> dict[str, np.ndarray]:
        """Per-angle/element means as numpy arrays, with the axis (``"angle"`` or ``"element"``) first."""
        means = self.aggregate(MetricReduction.MEAN_BATCH)
        return {self.axis: np.asarray(self.axis_values), **{k: convert_to_numpy(v) for k, v in means.items()}}
