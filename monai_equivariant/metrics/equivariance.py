"""How far a network is from commuting with rotations: compare g·f(x) with f(g·x) per image and rotation
angle (or group element).

:func:`compute_equivariance` measures one batch (as ``monai.metrics.compute_dice``); :class:`EquivarianceMetric`
is the MONAI ``CumulativeIterationMetric`` over it: call it on batches, then ``aggregate()`` per angle/element
(curves) or per image (box plots of outliers).
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from monai.metrics import CumulativeIterationMetric
from monai.metrics.utils import do_metric_reduction
from monai.utils import MetricReduction, convert_to_tensor

from monai_equivariant.groups import Group, as_group, rotate
from monai_equivariant.utils.equivariance import eval_mode_restored

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

SEGMENTATION_MEASURES = ("dice", "iou", "mad")
"""Dice and IoU of the binarised masks, mean absolute difference of the probabilities (all per image).
Dice/IoU are NaN where both masks are empty and ``ignore_empty=True`` (the default, as ``DiceMetric``)."""
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


def equivariance_transformations(
    spatial_dims: int,
    angles: Sequence[float] | None = None,
    group: str | Group | None = None,
    mode: str = "bilinear",
    input_padding: str = "zeros",
) -> Transformations:
    """The rotations by ``angles`` (2D, degrees; default :data:`DEFAULT_ANGLES_2D`) or the elements of ``group``
    (default in 3D: ``"O"``, the 24 cube rotations) for images with ``spatial_dims`` spatial dims."""
    if angles is not None and group is not None:
        raise ValueError("give either angles (2D rotations in degrees) or group (its elements), not both")
    if spatial_dims not in (2, 3):
        raise ValueError(f"expected images (B, C, H, W) or (B, C, D, H, W), got {spatial_dims} spatial dims")
    if group is None and spatial_dims == 3:
        if angles is not None:
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
    values = DEFAULT_ANGLES_2D if angles is None else tuple(float(a) for a in angles)
    if not values:
        raise ValueError("angles must not be empty")
    return Transformations(
        "angle", values, tuple(format(a, "g") for a in values),
        tuple(_rotation(a, mode) for a in values), tuple(_rotation(a, mode, input_padding) for a in values),
    )


def _check_options(
    task: str, activation: str | None, valid_region: str, mode: str, input_padding: str, margin: int, threshold: float
) -> None:
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
    if not isinstance(threshold, numbers.Real) or isinstance(threshold, bool) or not math.isfinite(threshold):
        raise ValueError(f"threshold must be a finite number, got {threshold!r}")
    if activation == "sigmoid" and not 0 < threshold < 1:
        raise ValueError(f"threshold must lie in (0, 1) for sigmoid probabilities, got {threshold!r}")


def _resolve_task(task: str, x: torch.Tensor, out: torch.Tensor) -> str:
    if out.dim() == 2:
        found = "classification"
    elif out.dim() == x.dim() and out.shape[2:] == x.shape[2:]:
        found = "segmentation"
    else:
        raise ValueError(
            f"network output {tuple(out.shape)} for input {tuple(x.shape)}: expected (B, K) logits or a "
            "(B, K, *spatial) map of the input's spatial size"
        )
    if task not in ("auto", found):
        raise ValueError(f"task={task!r} but the network output {tuple(out.shape)} looks like {found}")
    return found


def _probabilities(out: torch.Tensor, activation: str | None) -> torch.Tensor:
    if activation == "sigmoid":
        return torch.sigmoid(out)
    if activation == "softmax":
        return torch.softmax(out, dim=1)
    return out


def _binarise(prob: torch.Tensor, activation: str | None, threshold: float) -> torch.Tensor:
    if activation == "softmax":
        return F.one_hot(prob.argmax(dim=1), prob.shape[1]).movedim(-1, 1).bool()
    return prob > threshold


def _compare_logits(reference: torch.Tensor, moved: torch.Tensor) -> list[torch.Tensor]:
    agreement = (reference.argmax(dim=1) == moved.argmax(dim=1)).float()
    change = (moved - reference).abs().amax(dim=1)
    return [agreement, change]


def _compare_maps(
    transform: Transform,
    reference: torch.Tensor,
    moved: torch.Tensor,
    mask: torch.Tensor,
    activation: str | None,
    threshold: float,
    include_background: bool,
    ignore_empty: bool,
) -> list[torch.Tensor]:
    """Dice, IoU, MAD of transform(act(f(x))) vs act(f(transform(x))) over ``mask`` (1, 1, *spatial)."""
    expected = transform(_probabilities(reference, activation))
    actual = _probabilities(moved, activation)
    if expected.shape != actual.shape:
        raise ValueError(
            f"transformed output {tuple(expected.shape)} != output of the transformed input {tuple(actual.shape)}"
        )
    a, b = _binarise(expected, activation, threshold), _binarise(actual, activation, threshold)
    if activation == "softmax" and not include_background:
        expected, actual, a, b = expected[:, 1:], actual[:, 1:], a[:, 1:], b[:, 1:]
    weight = mask.expand_as(a)
    dims = tuple(range(1, a.dim()))
    intersection = (a & b & weight).sum(dims).float()
    sizes = ((a & weight).sum(dims) + (b & weight).sum(dims)).float()
    union = ((a | b) & weight).sum(dims).float()
    empty = torch.full_like(sizes, float("nan") if ignore_empty else 1.0)
    dice = torch.where(sizes == 0, empty, 2 * intersection / sizes.clamp_min(1))
    iou = torch.where(sizes == 0, empty, intersection / union.clamp_min(1))
    count = weight.sum(dims).clamp_min(1)
    mad = ((expected - actual).abs() * weight).sum(dims) / count
    return [dice, iou, mad]


def _finite(t: torch.Tensor) -> torch.Tensor:
    """(B,) True where every value of the item is finite."""
    return torch.isfinite(t).flatten(1).all(dim=1)


def _measure(
    forward: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    transformations: Transformations,
    task: str,
    activation: str | None,
    threshold: float,
    include_background: bool,
    ignore_empty: bool,
    valid_region_name: str,
    margin: int,
) -> dict[str, torch.Tensor]:
    """``{measure: (B, A)}`` for images x (B, C, *spatial); the caller sets eval mode and no_grad."""
    reference = forward(x)
    task = _resolve_task(task, x, reference)
    names = SEGMENTATION_MEASURES if task == "segmentation" else CLASSIFICATION_MEASURES
    finite_reference = _finite(reference)
    per_transform, finite = [], []
    for transform, input_transform in zip(transformations.outputs, transformations.inputs):
        moved = forward(input_transform(x))
        if task == "classification":
            values = _compare_logits(reference, moved)
        else:
            mask = valid_region(transform, x.shape[2:], valid_region_name, margin, x.device)
            values = _compare_maps(
                transform, reference, moved, mask, activation, threshold, include_background, ignore_empty
            )
        per_transform.append(values)
        finite.append(finite_reference & _finite(moved))
    ok = torch.stack(finite, dim=1)  # (B, A)
    results = {n: torch.stack(v, dim=1).float() for n, v in zip(names, zip(*per_transform))}
    if not bool(ok.all()):
        results = {n: v.masked_fill(~ok, float("nan")) for n, v in results.items()}
        bad_inputs = int((~_finite(x)).sum())
        warnings.warn(
            f"equivariance: non-finite network outputs for {int((~ok).sum())} of {ok.numel()} (image, "
            f"{transformations.axis}) pairs" + (f" ({bad_inputs} of {len(x)} input images have non-finite values)"
                                                if bad_inputs else "")
            + ": their measures are NaN and left out of the means",
            stacklevel=3,
        )
    return results


def compute_equivariance(
    network: Callable[[torch.Tensor], torch.Tensor],
    images: torch.Tensor,
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
    _check_options(task, activation, valid_region, mode, input_padding, margin, threshold)
    x = convert_to_tensor(images, track_meta=False)
    if not isinstance(x, torch.Tensor) or x.dim() < 3:
        raise ValueError(f"images must be a (B, C, *spatial) tensor, got {getattr(x, 'shape', type(x))}")
    transformations = equivariance_transformations(x.dim() - 2, angles, group, mode, input_padding)
    return _run(network, inferer, x, transformations, task, activation, threshold, include_background,
                ignore_empty, valid_region, margin)


def _run(
    network: Callable, inferer: Callable | None, x: torch.Tensor, transformations: Transformations, *options: Any
) -> dict[str, torch.Tensor]:
    if not torch.is_floating_point(x):
        x = x.float()
    forward = (lambda t: inferer(t, network)) if inferer is not None else network
    with eval_mode_restored(network):
        return _measure(forward, x, transformations, *options)


def _reduce(values: torch.Tensor, reduction: MetricReduction | str) -> torch.Tensor:
    """MONAI's ``do_metric_reduction`` (NaN skipped), but NaN, not 0, where every value reduced was NaN.

    On a copy: ``do_metric_reduction`` zeroes the NaN of its input in place (the metric's buffer)."""
    reduced, not_nans = do_metric_reduction(values.clone(), reduction)
    return torch.where(not_nans > 0, reduced, torch.full_like(reduced, float("nan")))


class EquivarianceMetric(CumulativeIterationMetric):
    """Similarity of g·f(x) and f(g·x) per image and transformation g, inside the region valid in both frames.

    In 2D the transformations are rotations by ``angles`` (degrees; default 0°..90° in 5° steps) with
    :func:`monai_equivariant.groups.rotate` (exact at multiples of 90°, bilinear otherwise). With ``group``
    (e.g. ``"p4m"``, or ``"O"``, the default in 3D: the 24 cube rotations) they are the group's elements,
    applied with ``Group.transform``, and are named ``g0``, ``g1``… (``axis == "element"``), not angles.

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
        if angles is not None and group is not None:
            raise ValueError("give either angles (2D rotations in degrees) or group (its elements), not both")
        _check_options(task, activation, valid_region, mode, input_padding, margin, threshold)
        self.network = network
        self.inferer = inferer
        self.angles_arg = None if angles is None else tuple(float(a) for a in angles)
        if self.angles_arg is not None and not self.angles_arg:
            raise ValueError("angles must not be empty")
        self.group_arg = group
        self.task = task
        self.activation = activation
        self.threshold = float(threshold)
        self.include_background = bool(include_background)
        self.ignore_empty = bool(ignore_empty)
        self.valid_region = valid_region
        self.margin = int(margin)
        self.mode = mode
        self.input_padding = input_padding
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
        task = self.resolved_task or self.task
        if task == "auto":
            raise RuntimeError("the task is detected from the first batch: call the metric first")
        return SEGMENTATION_MEASURES if task == "segmentation" else CLASSIFICATION_MEASURES

    def _setup(self, spatial_dims: int) -> Transformations:
        if self.spatial_dims is not None:
            if spatial_dims != self.spatial_dims:
                raise ValueError(
                    f"this metric was set up for {self.spatial_dims}D images, got {spatial_dims}D; reset() "
                    "does not change that: create a new metric"
                )
            return self._known()
        self.transformations = equivariance_transformations(
            spatial_dims, self.angles_arg, self.group_arg, self.mode, self.input_padding
        )
        self.spatial_dims = spatial_dims
        return self.transformations

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
        x = convert_to_tensor(y_pred, track_meta=False)  # MetaTensor -> plain tensor
        transformations = self._setup(x.dim() - 2)
        results = _run(
            net, self.inferer, x, transformations, self.task, self.activation,
            self.threshold, self.include_background, self.ignore_empty, self.valid_region, self.margin,
        )
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
        return {name: _reduce(values, reduction) for name, values in zip(self.measures, buffers)}

    def table(self) -> dict[str, np.ndarray]:
        """Per-angle/element means as numpy arrays, with the axis (``"angle"`` or ``"element"``) first."""
        means = self.aggregate(MetricReduction.MEAN_BATCH)
        return {self.axis: np.asarray(self.axis_values), **{k: v.cpu().numpy() for k, v in means.items()}}
