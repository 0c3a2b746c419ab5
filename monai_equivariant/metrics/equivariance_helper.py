"""The one core that measures equivariance: compare g·f(x) with f(g·x) per image and transformation g.

:class:`EquivarianceHelper` holds the options, validated once, and caches what depends only on the images'
shape (the transformations per spatial dims, the valid-region masks per spatial shape and device). Its thin
users: :func:`~monai_equivariant.metrics.compute_equivariance`, :class:`~monai_equivariant.metrics.EquivarianceMetric`
(as ``DiceHelper`` under ``compute_dice`` and ``DiceMetric`` in ``monai.metrics.meandice``), and the checks of
:mod:`monai_equivariant.utils.equivariance` (the disk mask, the rotations, :func:`eval_mode_restored`).
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from monai.metrics.utils import do_metric_reduction
from monai.utils import MetricReduction, convert_to_tensor

from monai_equivariant.groups import Group, as_group, rotate

__all__ = [
    "ACTIVATIONS",
    "CLASSIFICATION_MEASURES",
    "DEFAULT_ANGLES_2D",
    "INPUT_PADDINGS",
    "SEGMENTATION_MEASURES",
    "TASKS",
    "VALID_REGIONS",
    "EquivarianceHelper",
    "Transformations",
    "disk_mask",
    "equivariance_transformations",
    "eval_mode_restored",
    "reduce_metric",
    "valid_region",
]

SEGMENTATION_MEASURES = ("dice", "iou", "mad")
"""Dice and IoU of the binarised masks, mean absolute difference of the probabilities (all per image).
Dice/IoU are NaN where both masks are empty and ``ignore_empty=True`` (the default, as ``DiceMetric``)."""
CLASSIFICATION_MEASURES = ("agreement", "logit_change")
"""1.0 where argmax f(g·x) == argmax f(x); max_k |f(g·x)_k − f(x)_k| of the raw outputs (logits)."""
DEFAULT_ANGLES_2D: tuple[float, ...] = tuple(float(a) for a in range(0, 95, 5))
"""0°, 5°, ..., 90°: results repeat every 90° for grid-aligned data, so this range shows a whole period."""
TASKS = ("auto", "segmentation", "classification")
ACTIVATIONS = ("sigmoid", "softmax", None)
VALID_REGIONS = ("rotated", "disk", "all")
INPUT_PADDINGS = ("zeros", "border", "reflection")

VALID_TOLERANCE = 1e-4
"""A pixel of the transformed frame is valid where ``transform(ones) >= 1 - VALID_TOLERANCE``."""
MASK_CACHE_SIZE = 8
"""Spatial shapes (per device) whose valid-region masks a helper keeps."""

Transform = Callable[[torch.Tensor], torch.Tensor]


# ------------------------------------------------------------------------------------------------------------
# regions


def disk_mask(
    size: int | Sequence[int], radius: float | None = None, device: torch.device | str | None = None
) -> torch.Tensor:
    """Float mask of shape ``size`` ((size, size) for an int; any 2D/3D shape): 1 within ``radius`` of the grid
    centre. Default radius: ``min(size) / 2 - 1``, the inscribed disk less one pixel (the region that stays
    inside the grid under every rotation, with room for bilinear sampling)."""
    shape = (int(size), int(size)) if isinstance(size, numbers.Integral) else tuple(int(n) for n in size)
    radius = min(shape) / 2.0 - 1.0 if radius is None else float(radius)
    axes = [torch.arange(n, dtype=torch.float32, device=device) - (n - 1) / 2.0 for n in shape]
    squared = sum(a**2 for a in torch.meshgrid(*axes, indexing="ij"))
    return (squared <= radius**2).float()


def valid_region(
    transform: Transform, spatial_shape: Sequence[int], region: str = "rotated", margin: int = 0, device=None
) -> torch.Tensor:
    """(1, 1, *spatial) bool mask of the pixels of the transformed frame where the comparison is meaningful.

    ``"rotated"``: the pixels whose whole interpolation stencil comes from inside the original image, i.e.
    ``transform(ones) >= 1 - 1e-4`` (all pixels for 90° multiples and other grid symmetries; the corners
    that ``rotate`` fills with zero padding are excluded). ``"disk"``: additionally restricted to the inscribed
    disk/ball (radius ``min(shape) / 2``, the same region for every angle). ``"all"``: every pixel (shows what
    padding does). ``margin`` erodes the mask by that many pixels (to also drop the network's border effects).
    """
    if region not in VALID_REGIONS:
        raise ValueError(f"valid region must be one of {VALID_REGIONS}, got {region!r}")
    ones = torch.ones((1, 1, *spatial_shape), device=device)
    moved = transform(ones)
    if region == "all":
        return torch.ones_like(moved, dtype=torch.bool)
    mask = moved >= 1 - VALID_TOLERANCE
    if region == "disk":
        shape = moved.shape[2:]
        mask = mask & (disk_mask(shape, min(shape) / 2.0, moved.device) > 0.5)[None, None]
    if margin > 0:
        pool = F.max_pool2d if mask.dim() == 4 else F.max_pool3d
        outside = (~mask).float()
        mask = pool(F.pad(outside, [margin] * 2 * (mask.dim() - 2), value=1.0), 2 * margin + 1, stride=1) < 0.5
    return mask


# ------------------------------------------------------------------------------------------------------------
# transformations


@dataclass(frozen=True)
class Transformations:
    """The transformations a measurement compares under, in order.

    ``axis`` is ``"angle"`` (2D rotations; ``values`` in degrees, ``labels`` like ``"22.5"``) or ``"element"``
    (a group's elements; ``values`` the element indices, ``labels`` ``"g0"``, ``"g1"``…). ``outputs`` act on the
    network outputs and on the valid-region mask, ``inputs`` on the images (they differ only in padding).
    """

    axis: str
    values: tuple[float, ...]
    labels: tuple[str, ...]
    outputs: tuple[Transform, ...]
    inputs: tuple[Transform, ...]
    group: Group | None = None

    def __len__(self) -> int:
        return len(self.values)


def _rotation(angle: float, mode: str, padding_mode: str = "zeros") -> Transform:
    return lambda x: rotate(x, angle, mode=mode, padding_mode=padding_mode)


def _element(group: Group, g: int) -> Transform:
    return lambda x: group.transform(x, g)


def _check_angles_or_group(angles: Sequence[float] | None, group: str | Group | None) -> tuple[float, ...] | None:
    if angles is not None and group is not None:
        raise ValueError("give either angles (2D rotations in degrees) or group (its elements), not both")
    values = None if angles is None else tuple(float(a) for a in angles)
    if values is not None and not values:
        raise ValueError("angles must not be empty")
    return values


def equivariance_transformations(
    spatial_dims: int,
    angles: Sequence[float] | None = None,
    group: str | Group | None = None,
    mode: str = "bilinear",
    input_padding: str = "zeros",
) -> Transformations:
    """The rotations by ``angles`` (2D, degrees; default :data:`DEFAULT_ANGLES_2D`) or the elements of ``group``
    (default in 3D: ``"O"``, the 24 cube rotations) for images with ``spatial_dims`` spatial dims."""
    values = _check_angles_or_group(angles, group)
    if spatial_dims not in (2, 3):
        raise ValueError(f"expected images (B, C, H, W) or (B, C, D, H, W), got {spatial_dims} spatial dims")
    if group is None and spatial_dims == 3:
        if values is not None:
            raise ValueError("angles are 2D rotations; for 3D images give a group (default 'O')")
        group = "O"
    if group is not None:
        group = as_group(group)
        if group.spatial_dims != spatial_dims:
            raise ValueError(f"group {group.name} acts in {group.spatial_dims}D, images are {spatial_dims}D")
        elements = tuple(_element(group, g) for g in range(group.order))
        # exact grid maps (or SE(2,N)'s own resampling): the same transformation for inputs and outputs
        return Transformations(
            "element", tuple(float(g) for g in range(group.order)), tuple(f"g{g}" for g in range(group.order)),
            elements, elements, group,
        )
    values = DEFAULT_ANGLES_2D if values is None else values
    return Transformations(
        "angle", values, tuple(format(a, "g") for a in values),
        tuple(_rotation(a, mode) for a in values), tuple(_rotation(a, mode, input_padding) for a in values),
    )


# ------------------------------------------------------------------------------------------------------------
# modes and reductions


@contextmanager
def eval_mode_restored(*modules: Any) -> Iterator[None]:
    """Run ``modules`` in eval mode without gradients, then restore every submodule's own mode.

    What the equivariance metric, handler and the bundles' report do around the network: a train-mode net would
    otherwise be measured with batch statistics and would update its BatchNorm running statistics. Unlike
    ``monai.networks.utils.eval_mode`` (which calls ``.train()`` on the top module afterwards), submodules
    that were in eval mode inside a training net (e.g. a frozen encoder) stay in eval mode. Objects that
    are not ``torch.nn.Module`` (plain functions) are ignored.
    """
    nets = [m for m in modules if isinstance(m, torch.nn.Module)]
    modes = [[(sub, sub.training) for sub in net.modules()] for net in nets]
    try:
        for net in nets:
            net.eval()
        with torch.no_grad():
            yield
    finally:
        for saved in modes:
            for sub, training in saved:
                sub.training = training


def reduce_metric(values: torch.Tensor, reduction: MetricReduction | str) -> torch.Tensor:
    """MONAI's ``do_metric_reduction`` (NaN skipped), but NaN, not 0, where every value reduced was NaN.

    On a copy: ``do_metric_reduction`` zeroes the NaN of its input in place (a metric's buffer)."""
    reduced, not_nans = do_metric_reduction(values.clone(), reduction)
    return torch.where(not_nans > 0, reduced, torch.full_like(reduced, float("nan")))


# ------------------------------------------------------------------------------------------------------------
# comparisons


def _finite(t: torch.Tensor) -> torch.Tensor:
    """(B,) True where every value of the item is finite."""
    return torch.isfinite(t).flatten(1).all(dim=1)


def _compare_logits(reference: torch.Tensor, moved: torch.Tensor) -> list[torch.Tensor]:
    agreement = (reference.argmax(dim=1) == moved.argmax(dim=1)).float()
    change = (moved - reference).abs().amax(dim=1)
    return [agreement, change]


class EquivarianceHelper:
    """Options of an equivariance measurement, validated once; calling it measures a batch.

    Built once by :func:`~monai_equivariant.metrics.compute_equivariance` and by
    :class:`~monai_equivariant.metrics.EquivarianceMetric` (arguments as documented there). The transformations
    are made once per number of spatial dims and the valid-region masks once per spatial shape and device
    (see :meth:`masks`).

    Example::

        helper = EquivarianceHelper(angles=[0, 45, 90])
        values = helper(net, images)   # {"dice": (B, 3), "iou": (B, 3), "mad": (B, 3)}
    """

    def __init__(
        self,
        *,
        angles: Sequence[float] | None = None,
        group: str | Group | None = None,
        task: str = "auto",
        activation: str | None = "sigmoid",
        threshold: float = 0.5,
        include_background: bool = True,
        ignore_empty: bool = True,
        valid_region: str = "rotated",
        margin: int = 0,
        mode: str = "bilinear",
        input_padding: str = "zeros",
    ) -> None:
        self.angles = _check_angles_or_group(angles, group)
        if task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {task!r}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
        if valid_region not in VALID_REGIONS:
            raise ValueError(f"valid_region must be one of {VALID_REGIONS}, got {valid_region!r}")
        if mode not in ("bilinear", "nearest"):
            raise ValueError(f"mode must be 'bilinear' or 'nearest', got {mode!r}")
        if input_padding not in INPUT_PADDINGS:
            raise ValueError(f"input_padding must be one of {INPUT_PADDINGS}, got {input_padding!r}")
        if margin < 0:
            raise ValueError(f"margin must be >= 0 pixels, got {margin}")
        if not isinstance(threshold, numbers.Real) or isinstance(threshold, bool) or not math.isfinite(threshold):
            raise ValueError(f"threshold must be a finite number, got {threshold!r}")
        if activation == "sigmoid" and not 0 < threshold < 1:
            raise ValueError(f"threshold must lie in (0, 1) for sigmoid probabilities, got {threshold!r}")
        self.group = group
        self.task = task
        self.activation = activation
        self.threshold = float(threshold)
        self.include_background = bool(include_background)
        self.ignore_empty = bool(ignore_empty)
        self.valid_region = valid_region
        self.margin = int(margin)
        self.mode = mode
        self.input_padding = input_padding
        self._transformations: dict[int, Transformations] = {}
        self._masks: dict[tuple[tuple[int, ...], str], tuple[torch.Tensor, ...]] = {}

    # --------------------------------------------------------------------------------------------------------
    # cached per shape

    def transformations(self, spatial_dims: int) -> Transformations:
        """The transformations for images with ``spatial_dims`` spatial dims (made once per dims)."""
        if spatial_dims not in self._transformations:
            self._transformations[spatial_dims] = equivariance_transformations(
                spatial_dims, self.angles, self.group, self.mode, self.input_padding
            )
        return self._transformations[spatial_dims]

    def masks(self, spatial_shape: Sequence[int], device: torch.device | str | None = None) -> tuple[torch.Tensor, ...]:
        """One (1, 1, *spatial) bool :func:`valid_region` per transformation, made once per shape and device."""
        shape = tuple(int(n) for n in spatial_shape)
        key = (shape, str(torch.device(device) if device is not None else torch.device("cpu")))
        if key not in self._masks:
            outputs = self.transformations(len(shape)).outputs
            if len(self._masks) >= MASK_CACHE_SIZE:
                self._masks.pop(next(iter(self._masks)))
            self._masks[key] = tuple(valid_region(t, shape, self.valid_region, self.margin, device) for t in outputs)
        return self._masks[key]

    def measures(self, task: str) -> tuple[str, ...]:
        """:data:`SEGMENTATION_MEASURES` or :data:`CLASSIFICATION_MEASURES` for a resolved ``task``."""
        return SEGMENTATION_MEASURES if task == "segmentation" else CLASSIFICATION_MEASURES

    # --------------------------------------------------------------------------------------------------------
    # measuring

    def __call__(
        self,
        network: Callable[[torch.Tensor], torch.Tensor],
        images: Any,
        inferer: Callable[..., torch.Tensor] | None = None,
    ) -> dict[str, torch.Tensor]:
        """``{measure: (B, A)}`` for images (B, C, *spatial); ``network`` (through ``inferer(x, network)`` if
        given) runs in eval mode without gradients, each submodule's mode restored afterwards."""
        x = convert_to_tensor(images, track_meta=False)  # MetaTensor -> plain tensor
        if not isinstance(x, torch.Tensor) or x.dim() < 3:
            raise ValueError(f"images must be a (B, C, *spatial) tensor, got {getattr(x, 'shape', type(x))}")
        transformations = self.transformations(x.dim() - 2)
        if not torch.is_floating_point(x):
            x = x.float()
        forward = (lambda t: inferer(t, network)) if inferer is not None else network
        with eval_mode_restored(network):
            return self._measure(forward, x, transformations)

    def resolve_task(self, x: torch.Tensor, out: torch.Tensor) -> str:
        """``"segmentation"`` or ``"classification"`` from the output's shape (checked against ``task``)."""
        if out.dim() == 2:
            found = "classification"
        elif out.dim() == x.dim() and out.shape[2:] == x.shape[2:]:
            found = "segmentation"
        else:
            raise ValueError(
                f"network output {tuple(out.shape)} for input {tuple(x.shape)}: expected (B, K) logits or a "
                "(B, K, *spatial) map of the input's spatial size"
            )
        if self.task not in ("auto", found):
            raise ValueError(f"task={self.task!r} but the network output {tuple(out.shape)} looks like {found}")
        return found

    def _measure(
        self, forward: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, transformations: Transformations
    ) -> dict[str, torch.Tensor]:
        reference = forward(x)
        task = self.resolve_task(x, reference)
        masks = self.masks(x.shape[2:], x.device) if task == "segmentation" else (None,) * len(transformations)
        finite_reference = _finite(reference)
        per_transform, finite = [], []
        for transform, input_transform, mask in zip(transformations.outputs, transformations.inputs, masks):
            moved = forward(input_transform(x))
            if task == "classification":
                values = _compare_logits(reference, moved)
            else:
                values = self._compare_maps(transform, reference, moved, mask)
            per_transform.append(values)
            finite.append(finite_reference & _finite(moved))
        ok = torch.stack(finite, dim=1)  # (B, A)
        results = {n: torch.stack(v, dim=1).float() for n, v in zip(self.measures(task), zip(*per_transform))}
        if not bool(ok.all()):
            results = {n: v.masked_fill(~ok, float("nan")) for n, v in results.items()}
            bad_inputs = int((~_finite(x)).sum())
            warnings.warn(
                f"equivariance: non-finite network outputs for {int((~ok).sum())} of {ok.numel()} (image, "
                f"{transformations.axis}) pairs"
                + (f" ({bad_inputs} of {len(x)} input images have non-finite values)" if bad_inputs else "")
                + ": their measures are NaN and left out of the means",
                stacklevel=4,
            )
        return results

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
            raise ValueError(
                f"transformed output {tuple(expected.shape)} != output of the transformed input {tuple(actual.shape)}"
            )
        a, b = self._binarise(expected), self._binarise(actual)
        if self.activation == "softmax" and not self.include_background:
            expected, actual, a, b = expected[:, 1:], actual[:, 1:], a[:, 1:], b[:, 1:]
        weight = mask.expand_as(a)
        dims = tuple(range(1, a.dim()))
        intersection = (a & b & weight).sum(dims).float()
        sizes = ((a & weight).sum(dims) + (b & weight).sum(dims)).float()
        union = ((a | b) & weight).sum(dims).float()
        empty = torch.full_like(sizes, float("nan") if self.ignore_empty else 1.0)
        dice = torch.where(sizes == 0, empty, 2 * intersection / sizes.clamp_min(1))
        iou = torch.where(sizes == 0, empty, intersection / union.clamp_min(1))
        count = weight.sum(dims).clamp_min(1)
        mad = ((expected - actual).abs() * weight).sum(dims) / count
        return [dice, iou, mad]
