"""How far a network is from commuting with rotations: compare rotate(f(x)) with f(rotate(x)) per image and angle.

:class:`EquivarianceMetric` is a MONAI ``CumulativeIterationMetric``: call it on batches of images, then
``aggregate()`` per angle (curves) or per image (box plots of outliers).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from monai.metrics import CumulativeIterationMetric
from monai.metrics.utils import do_metric_reduction
from monai.utils import MetricReduction, convert_to_tensor

from monai_equivariant.groups import Group, as_group, rotate

__all__ = [
    "EquivarianceMetric",
    "SEGMENTATION_MEASURES",
    "CLASSIFICATION_MEASURES",
    "DEFAULT_ANGLES_2D",
    "valid_region",
]

SEGMENTATION_MEASURES = ("dice", "iou", "mad")
"""Dice and IoU of the binarised masks, mean absolute difference of the probabilities (all per image)."""
CLASSIFICATION_MEASURES = ("agreement", "logit_change")
"""1.0 where argmax f(g·x) == argmax f(x); max_k |f(g·x)_k − f(x)_k| of the raw outputs (logits)."""
DEFAULT_ANGLES_2D: tuple[float, ...] = tuple(float(a) for a in range(0, 95, 5))
"""0°, 5°, ..., 90°: results repeat every 90° for grid-aligned data, so this range shows a whole period."""

_VALID_TOLERANCE = 1e-4
_TASKS = ("auto", "segmentation", "classification")
_ACTIVATIONS = ("sigmoid", "softmax", None)
_REGIONS = ("rotated", "disk", "all")
_PADDINGS = ("zeros", "border", "reflection")

Transform = Callable[[torch.Tensor], torch.Tensor]


def valid_region(
    transform: Transform, spatial_shape: Sequence[int], region: str = "rotated", margin: int = 0, device=None
) -> torch.Tensor:
    """(1, 1, *spatial) bool mask of the pixels of the transformed frame where the comparison is meaningful.

    ``"rotated"``: the pixels whose whole interpolation stencil comes from inside the original image, i.e.
    ``transform(ones) >= 1 - 1e-4`` (all pixels for 90° multiples and other grid symmetries; the corners
    that ``rotate`` fills with zero padding are excluded). ``"disk"``: additionally restricted to the inscribed
    disk/ball (the same region for every angle). ``"all"``: every pixel (shows what padding does).
    ``margin`` erodes the mask by that many pixels (to also drop the network's border effects).
    """
    if region not in _REGIONS:
        raise ValueError(f"valid region must be one of {_REGIONS}, got {region!r}")
    ones = torch.ones((1, 1, *spatial_shape), device=device)
    moved = transform(ones)
    if region == "all":
        return torch.ones_like(moved, dtype=torch.bool)
    mask = moved >= 1 - _VALID_TOLERANCE
    if region == "disk":
        shape = moved.shape[2:]
        radius = (min(shape) - 1) / 2.0 + 0.5
        axes = [torch.arange(n, device=moved.device, dtype=torch.float32) - (n - 1) / 2.0 for n in shape]
        squared = sum(a**2 for a in torch.meshgrid(*axes, indexing="ij"))
        mask = mask & (squared <= radius**2)[None, None]
    if margin > 0:
        pool = F.max_pool2d if mask.dim() == 4 else F.max_pool3d
        outside = (~mask).float()
        mask = pool(F.pad(outside, [margin] * 2 * (mask.dim() - 2), value=1.0), 2 * margin + 1, stride=1) < 0.5
    return mask


def _rotation(angle: float, mode: str, padding_mode: str = "zeros") -> Transform:
    return lambda x: rotate(x, angle, mode=mode, padding_mode=padding_mode)


def _element(group: Group, g: int) -> Transform:
    return lambda x: group.transform(x, g)


class EquivarianceMetric(CumulativeIterationMetric):
    """Similarity of rotate(f(x)) and f(rotate(x)) per image and angle, inside the region valid in both frames.

    In 2D the transformations are rotations by ``angles`` (degrees; default 0°..90° in 5° steps) with
    :func:`monai_equivariant.groups.rotate` (exact at multiples of 90°, bilinear otherwise). With ``group``
    (e.g. ``"p4m"``, or ``"O"``, the default in 3D: the 24 cube rotations) they are the group's elements,
    applied with ``Group.transform``.

    Segmentation networks (output ``(B, K, *spatial)``): ``activation`` turns outputs into probabilities
    (sigmoid, or softmax), masks are ``probability > threshold`` (sigmoid/None) or the one-hot argmax (softmax);
    measures :data:`SEGMENTATION_MEASURES` pooled over the kept channels and the valid pixels. Both masks
    empty counts as Dice = IoU = 1 (they agree). Classifiers (output ``(B, K)``, which must be invariant):
    measures :data:`CLASSIFICATION_MEASURES`.

    Valid region (decision): the comparison happens in the rotated frame, where both rotate(f(x)) and
    f(rotate(x)) are only backed by real data at the pixels whose source lies inside the original image.
    That set is exactly ``rotate(ones) >= 1 - 1e-4`` (same ``rotate``, same interpolation), so it adapts to
    every angle, is the whole image at 90° multiples, and never counts the zero-padded corners
    (see :func:`valid_region`; ``valid_region="disk"`` uses the inscribed disk, ``margin`` erodes further).

    Args:
        network: callable ``(B, C, *spatial) -> output``; may also be given per call. Put it in eval mode.
        angles: 2D rotation angles in degrees.
        group: a group (name) whose elements are used instead of angles.
        task: ``"auto"`` (from the output's shape), ``"segmentation"`` or ``"classification"``.
        activation: ``"sigmoid"``, ``"softmax"`` or None (outputs are already probabilities).
        threshold: binarisation threshold for sigmoid/None.
        include_background: with softmax, whether channel 0 counts in Dice/IoU/MAD.
        valid_region: ``"rotated"``, ``"disk"`` or ``"all"``.
        margin: pixels eroded from the valid region.
        mode: interpolation of ``rotate`` (``"bilinear"`` or ``"nearest"``).
        input_padding: how the rotated *input* is filled where it comes from outside the image: ``"zeros"``
            (default; the black corners a rotation brings in, which networks see and react to), ``"border"`` or
            ``"reflection"`` (the network sees plausible tissue there). The output comparison and the valid
            region are unchanged.
        reduction: default of :meth:`aggregate` (MONAI ``MetricReduction``): ``"mean_batch"`` = per angle
            (a curve), ``"none"`` = per image and angle, ``"mean"`` = one number.

    Example::

        metric = EquivarianceMetric(net.eval(), angles=range(0, 95, 5))
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
        task: str = "auto",
        activation: str | None = "sigmoid",
        threshold: float = 0.5,
        include_background: bool = True,
        valid_region: str = "rotated",
        margin: int = 0,
        mode: str = "bilinear",
        input_padding: str = "zeros",
        reduction: MetricReduction | str = MetricReduction.MEAN_BATCH,
    ) -> None:
        super().__init__()
        if angles is not None and group is not None:
            raise ValueError("give either angles (2D rotations in degrees) or group (its elements), not both")
        if task not in _TASKS:
            raise ValueError(f"task must be one of {_TASKS}, got {task!r}")
        if activation not in _ACTIVATIONS:
            raise ValueError(f"activation must be one of {_ACTIVATIONS}, got {activation!r}")
        if valid_region not in _REGIONS:
            raise ValueError(f"valid_region must be one of {_REGIONS}, got {valid_region!r}")
        if mode not in ("bilinear", "nearest"):
            raise ValueError(f"mode must be 'bilinear' or 'nearest', got {mode!r}")
        if input_padding not in _PADDINGS:
            raise ValueError(f"input_padding must be one of {_PADDINGS}, got {input_padding!r}")
        if margin < 0:
            raise ValueError(f"margin must be >= 0 pixels, got {margin}")
        self.network = network
        self.angles_arg = None if angles is None else tuple(float(a) for a in angles)
        if self.angles_arg is not None and not self.angles_arg:
            raise ValueError("angles must not be empty")
        self.group_arg = group
        self.task = task
        self.activation = activation
        self.threshold = float(threshold)
        self.include_background = bool(include_background)
        self.valid_region = valid_region
        self.margin = int(margin)
        self.mode = mode
        self.input_padding = input_padding
        self.reduction = reduction
        self.spatial_dims: int | None = None
        self.resolved_task: str | None = None
        self._transforms: list[Transform] = []
        self.angles: list[float] = []
        self.labels: list[str] = []

    # ------------------------------------------------------------------------------------------------
    # set-up from the first batch

    def _setup(self, spatial_dims: int) -> None:
        """Fix the transformations (and their labels) for inputs with ``spatial_dims`` spatial dims."""
        if self.spatial_dims is not None:
            if spatial_dims != self.spatial_dims:
                raise ValueError(
                    f"this metric was set up for {self.spatial_dims}D images, got {spatial_dims}D; reset() "
                    "does not change that: create a new metric"
                )
            return
        if spatial_dims not in (2, 3):
            raise ValueError(f"expected images (B, C, H, W) or (B, C, D, H, W), got {spatial_dims} spatial dims")
        group = self.group_arg
        if group is None and spatial_dims == 3:
            if self.angles_arg is not None:
                raise ValueError("angles are 2D rotations; for 3D images give a group (default 'O')")
            group = "O"
        if group is not None:
            group = as_group(group, spatial_dims)
            if group.spatial_dims != spatial_dims:
                raise ValueError(f"group {group.name} acts in {group.spatial_dims}D, images are {spatial_dims}D")
            self._transforms = [_element(group, g) for g in range(group.order)]
            self._input_transforms = self._transforms  # exact: nothing comes from outside the grid
            self.angles = [float(g) for g in range(group.order)]
            self.labels = [f"g{g}" for g in range(group.order)]
        else:
            self.angles = list(self.angles_arg or DEFAULT_ANGLES_2D)
            self._transforms = [_rotation(a, self.mode) for a in self.angles]
            self._input_transforms = [_rotation(a, self.mode, self.input_padding) for a in self.angles]
            self.labels = [format(a, "g") for a in self.angles]
        self.spatial_dims = spatial_dims

    @property
    def measures(self) -> tuple[str, ...]:
        """Names of the buffered measures (known after the first call, or when ``task`` is set)."""
        task = self.resolved_task or self.task
        if task == "auto":
            raise RuntimeError("the task is detected from the first batch: call the metric first")
        return SEGMENTATION_MEASURES if task == "segmentation" else CLASSIFICATION_MEASURES

    def _resolve_task(self, x: torch.Tensor, out: torch.Tensor) -> str:
        if out.dim() == 2:
            task = "classification"
        elif out.dim() == x.dim() and out.shape[2:] == x.shape[2:]:
            task = "segmentation"
        else:
            raise ValueError(
                f"network output {tuple(out.shape)} for input {tuple(x.shape)}: expected (B, K) logits or a "
                "(B, K, *spatial) map of the input's spatial size"
            )
        if self.task not in ("auto", task):
            raise ValueError(f"task={self.task!r} but the network output {tuple(out.shape)} looks like {task}")
        if self.resolved_task not in (None, task):
            raise ValueError(f"earlier batches were {self.resolved_task}, this one is {task}")
        return task

    # ------------------------------------------------------------------------------------------------
    # computation

    def __call__(  # type: ignore[override]
        self, images: Any, y: Any = None, network: Callable | None = None, **kwargs: Any
    ) -> Any:
        """Buffer the measures of a batch of images (B, C, *spatial) (or a list of (C, *spatial)).

        Returns a list with one (B, n_angles) tensor per measure (see :attr:`measures`).
        ``y`` is accepted for MONAI's call signature and ignored (no ground truth is needed).
        """
        return super().__call__(images, None, network=network, **kwargs)

    def _compute_tensor(  # type: ignore[override]
        self, y_pred: torch.Tensor, y: torch.Tensor | None = None, network: Callable | None = None
    ) -> list[torch.Tensor]:
        net = network if network is not None else self.network
        if net is None:
            raise ValueError("EquivarianceMetric needs a network: pass it to the constructor or to the call")
        x = convert_to_tensor(y_pred, track_meta=False)  # MetaTensor -> plain tensor
        if not torch.is_floating_point(x):
            x = x.float()
        self._setup(x.dim() - 2)
        with torch.no_grad():
            reference = net(x)
            task = self._resolve_task(x, reference)
            self.resolved_task = task
            per_angle = []
            for transform, input_transform in zip(self._transforms, self._input_transforms):
                moved = net(input_transform(x))
                if task == "classification":
                    per_angle.append(self._compare_logits(reference, moved))
                else:
                    mask = valid_region(transform, x.shape[2:], self.valid_region, self.margin, x.device)
                    per_angle.append(self._compare_maps(transform, reference, moved, mask))
        # per_angle: A lists of M (B,) tensors -> M tensors (B, A)
        return [torch.stack(values, dim=1).float() for values in zip(*per_angle)]

    def _compare_logits(self, reference: torch.Tensor, moved: torch.Tensor) -> list[torch.Tensor]:
        agreement = (reference.argmax(dim=1) == moved.argmax(dim=1)).float()
        change = (moved - reference).abs().amax(dim=1)
        return [agreement, change]

    def _probabilities(self, out: torch.Tensor) -> torch.Tensor:
        if self.activation == "sigmoid":
            return torch.sigmoid(out)
        if self.activation == "softmax":
            return torch.softmax(out, dim=1)
        return out

    def _binarise(self, prob: torch.Tensor) -> torch.Tensor:
        if self.activation == "softmax":
            return F.one_hot(prob.argmax(dim=1), prob.shape[1]).movedim(-1, 1).bool()
        return prob > self.threshold

    def _compare_maps(
        self, transform: Transform, reference: torch.Tensor, moved: torch.Tensor, mask: torch.Tensor
    ) -> list[torch.Tensor]:
        """Dice, IoU, MAD of transform(act(f(x))) vs act(f(transform(x))) over ``mask`` (1, 1, *spatial)."""
        expected = transform(self._probabilities(reference))
        actual = self._probabilities(moved)
        if expected.shape != actual.shape:
            raise ValueError(f"transformed output {tuple(expected.shape)} != output of the transformed input "
                             f"{tuple(actual.shape)}")
        a, b = self._binarise(expected), self._binarise(actual)
        if self.activation == "softmax" and not self.include_background:
            expected, actual, a, b = expected[:, 1:], actual[:, 1:], a[:, 1:], b[:, 1:]
        weight = mask.expand_as(a)
        dims = tuple(range(1, a.dim()))
        intersection = (a & b & weight).sum(dims).float()
        sizes = ((a & weight).sum(dims) + (b & weight).sum(dims)).float()
        union = ((a | b) & weight).sum(dims).float()
        empty = sizes == 0
        dice = torch.where(empty, torch.ones_like(sizes), 2 * intersection / sizes.clamp_min(1))
        iou = torch.where(empty, torch.ones_like(union), intersection / union.clamp_min(1))
        count = weight.sum(dims).clamp_min(1)
        mad = ((expected - actual).abs() * weight).sum(dims) / count
        return [dice, iou, mad]

    # ------------------------------------------------------------------------------------------------
    # results

    def aggregate(  # type: ignore[override]
        self, reduction: MetricReduction | str | None = None
    ) -> dict[str, torch.Tensor]:
        """Reduce the buffers: ``{measure: tensor}`` with (n_angles,) for ``"mean_batch"`` (the default),
        (N, n_angles) for ``"none"``, a one-element tensor for ``"mean"`` (as MONAI's metrics)."""
        buffers = self.get_buffer()
        if buffers is None:
            raise RuntimeError("EquivarianceMetric has no results: call it on a batch of images first")
        if isinstance(buffers, torch.Tensor):
            buffers = [buffers]
        reduction = self.reduction if reduction is None else reduction
        return {name: do_metric_reduction(values, reduction)[0] for name, values in zip(self.measures, buffers)}

    def table(self) -> dict[str, np.ndarray]:
        """Per-angle means as numpy arrays, with ``"angle"`` first (what the plots and CSVs use)."""
        means = self.aggregate(MetricReduction.MEAN_BATCH)
        return {"angle": np.asarray(self.angles), **{k: v.cpu().numpy() for k, v in means.items()}}
