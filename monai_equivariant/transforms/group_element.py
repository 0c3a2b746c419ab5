"""MONAI transforms that apply one element of a grid group (rot90s and flips of the pixel/voxel grid) exactly.

``GroupElement`` applies a given element, ``RandGroupElement`` a uniformly random one (the augmentation that
covers a group completely, e.g. all 24 cube rotations of ``"O"``, which ``RandRotate90`` cannot reach). Both
have dictionary forms, are invertible (``monai.transforms.Invertd`` undoes them), update the affine of a
MetaTensor and run lazily like MONAI's ``Flip``/``Rotate90``. The pixels move exactly as
``group.spatial_transform(x, g)`` moves them (axis permutation and flips: no interpolation).

Lateral labels: with ``label_permutation`` (e.g. ``[0, 2, 1]``: left ↔ right) the label keys also permute their
classes under every reflection (det −1) and keep them under rotations, so a mirrored left kidney becomes a right
one. A label with one channel is an integer label map (its *values* are permuted); a label with
``len(label_permutation)`` channels is one-hot or a probability map (its *channels* are permuted). The inverse
undoes the permutation too.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data.meta_obj import get_track_meta
from monai.data.meta_tensor import MetaTensor
from monai.transforms import InvertibleTransform, LazyTransform, MapTransform, RandomizableTransform
from monai.transforms.inverse import TraceableTransform
from monai.utils import TraceKeys, TransformBackends, convert_to_tensor, ensure_tuple

from monai_equivariant.groups import Group, as_group
from monai_equivariant.layers.lateral_head import check_label_permutation, element_label_permutation

__all__ = [
    "GroupElement",
    "GroupElementd",
    "RandGroupElement",
    "RandGroupElementd",
    "group_element_affine",
    "label_layout",
    "permute_labels",
]


def _grid_group(group: str | Group) -> Group:
    group = as_group(group)
    if not group.is_grid:
        raise ValueError(
            f"group {group.name!r} does not map the pixel grid onto itself, so it cannot be applied exactly; "
            "use a grid group (trivial, p4, p4m, D4, D4h, O, Oh)"
        )
    return group


def _label_permutation(group: Group, label_permutation: object) -> tuple[int, ...] | None:
    return None if label_permutation is None else check_label_permutation(label_permutation, group)


def label_layout(labels: torch.Tensor, classes: int, channel_dim: int = 0) -> str:
    """How a label of ``classes`` lateral classes is stored: ``"channels"`` (``classes`` channels along
    ``channel_dim``: one-hot or probabilities) or ``"values"`` (one channel of integer class values 0..classes-1).

    Raises:
        ValueError naming ``label_permutation``: another channel count, or values that are not classes.
    """
    channels = labels.shape[channel_dim]
    if channels == classes:
        return "channels"
    if channels != 1:
        raise ValueError(
            f"label_permutation has {classes} classes: a label must have {classes} channels (one-hot or "
            f"probabilities) or 1 (an integer label map), got {channels} channels (shape {tuple(labels.shape)})"
        )
    if labels.numel():
        integral = torch.equal(labels.long().to(labels.dtype), labels)
        if not integral or labels.min() < 0 or labels.max() >= classes:
            raise ValueError(
                f"label_permutation has {classes} classes: a one-channel label must hold integer class values "
                f"0..{classes - 1}, got values in [{float(labels.min())}, {float(labels.max())}]"
                + ("" if integral else " that are not all integers")
            )
    return "values"


def permute_labels(labels: torch.Tensor, permutation: tuple[int, ...] | list[int], channel_dim: int = 0) -> torch.Tensor:
    """Permute the classes of ``labels`` (a plain tensor, laid out as :func:`label_layout` says): channel c takes
    channel ``permutation[c]``, or value v becomes ``permutation[v]`` (dtype kept)."""
    lookup = torch.as_tensor(permutation, device=labels.device)
    if label_layout(labels, len(permutation), channel_dim) == "channels":
        return labels.index_select(channel_dim, lookup)
    return lookup[labels.long()].to(labels.dtype)


def group_element_affine(matrix: np.ndarray, in_shape: list[int], rank: int) -> torch.Tensor:
    """Homogeneous (rank+1, rank+1) map from output voxel indices to input voxel indices of ``out(y) = x(M^-1 y)``.

    ``M`` (d, d) acts on coordinates centred on the array (``(n - 1) / 2`` per axis); the output shape is the
    input shape permuted by ``M``. This is the affine MONAI composes into ``MetaTensor.affine``.
    """
    d = matrix.shape[0]
    permutation = np.abs(matrix)
    out_shape = (permutation @ np.asarray(in_shape, dtype=np.float64)).tolist()
    xform = np.eye(rank + 1)
    xform[:d, :d] = matrix.T  # input centred coordinate = M^T (output centred coordinate)
    xform[:d, rank] = np.asarray([(n - 1) / 2 for n in in_shape]) - matrix.T @ np.asarray([(n - 1) / 2 for n in out_shape])
    return torch.as_tensor(xform, dtype=torch.float64)


class GroupElement(InvertibleTransform, LazyTransform):
    """Apply element ``element`` of a grid group to a channel-first image or label ``(C, *spatial)``.

    Args:
        group: a grid group or its name (``"p4"``, ``"p4m"`` for 2D; ``"D4"``, ``"D4h"``, ``"O"``, ``"Oh"`` for 3D;
            ``"trivial"``).
        element: index of the element, ``0 <= element < |G|`` (0 is the identity), as in ``group.transform``.
        lazy: execute lazily (MONAI lazy resampling), as ``monai.transforms.Rotate90`` does.
        label_permutation: for a label with lateral classes, the class permutation of a reflection (a list,
            e.g. ``[0, 2, 1]``); applied when ``element`` is a reflection (see the module docstring for one-hot
            vs integer label maps). The group must contain reflections. None (default): no permutation.

    The output equals ``group.spatial_transform(img[None], element)[0]`` (classes permuted under a reflection
    when ``label_permutation`` is set); MetaTensor affines are updated. In lazy mode the class permutation is
    applied at once (it commutes with the pending spatial move).
    """

    backend = [TransformBackends.TORCH]

    def __init__(
        self, group: str | Group, element: int = 0, lazy: bool = False, label_permutation: list[int] | None = None
    ) -> None:
        LazyTransform.__init__(self, lazy=lazy)
        self.group = _grid_group(group)
        self.group._check_element(element)
        self.element = int(element)
        self.label_permutation = _label_permutation(self.group, label_permutation)

    def __call__(self, img: torch.Tensor, lazy: bool | None = None) -> torch.Tensor:
        """img: (C, *spatial) with ``group.spatial_dims`` spatial axes; returns the transformed (C, *spatial')."""
        lazy_ = self.lazy if lazy is None else lazy
        return self._apply(img, self.element, lazy_, self.get_transform_info())

    def _apply(self, img: torch.Tensor, element: int, lazy: bool, transform_info: dict) -> torch.Tensor:
        img = convert_to_tensor(img, track_meta=get_track_meta())
        dims = self.group.spatial_dims
        if img.ndim != dims + 1:
            raise ValueError(
                f"{self.group.name} acts on channel-first (C, *spatial) arrays with {dims} spatial dims; "
                f"got shape {tuple(img.shape)}"
            )
        matrix = np.round(self.group.matrices[element]).astype(np.int64)
        in_shape = [int(n) for n in (img.peek_pending_shape() if isinstance(img, MetaTensor) else img.shape[1:])]
        rank = int(img.peek_pending_rank()) if isinstance(img, MetaTensor) else 3
        rank = max(rank, dims)
        out_shape = [int(n) for n in np.abs(matrix) @ np.asarray(in_shape)]
        permutation = element_label_permutation(self.label_permutation, self.group, element)
        extra_info = {
            "matrix": matrix.tolist(),
            "element": element,
            "label_permutation": None if permutation is None else list(permutation),
        }
        meta_info = TraceableTransform.track_transform_meta(
            img,
            sp_size=out_shape,
            affine=group_element_affine(matrix, in_shape, rank),
            extra_info=extra_info,
            orig_size=in_shape,
            transform_info=transform_info,
            lazy=lazy,
        )
        plain = img.as_tensor() if isinstance(img, MetaTensor) else img
        if permutation is not None:
            plain = permute_labels(plain, permutation)
        elif self.label_permutation is not None:  # a rotation: no permutation, but the same check of the label
            label_layout(plain, len(self.label_permutation))
        if lazy:
            out = convert_to_tensor(plain, track_meta=get_track_meta())
            return out.copy_meta_from(meta_info) if isinstance(out, MetaTensor) else meta_info
        moved = self.group.spatial_transform(plain[None], element)[0].contiguous()
        out = convert_to_tensor(moved, track_meta=get_track_meta())
        return out.copy_meta_from(meta_info) if isinstance(out, MetaTensor) else out

    def inverse(self, data: torch.Tensor) -> torch.Tensor:
        transform = self.pop_transform(data)
        return self.inverse_transform(data, transform)

    def inverse_transform(self, data: torch.Tensor, transform: Mapping) -> torch.Tensor:
        """Undo the element recorded in ``transform`` (applies its inverse, and the class permutation it applied,
        without tracking it)."""
        extra = transform[TraceKeys.EXTRA_INFO]
        element = int(extra["element"])
        # a reflection's inverse is a reflection: the same (self-inverse) permutation undoes it
        undo = GroupElement(self.group, int(self.group.inverse[element]), label_permutation=extra.get("label_permutation"))
        with undo.trace_transform(False):
            return undo(data, lazy=False)


class RandGroupElement(RandomizableTransform, InvertibleTransform, LazyTransform):
    """With probability ``prob``, apply a uniformly random element of a grid group (identity included).

    Args:
        group: a grid group or its name, as for :class:`GroupElement`.
        prob: probability of transforming (default 1.0: every call draws an element of the whole group).
        lazy: execute lazily, as ``monai.transforms.RandRotate90`` does.
        label_permutation: class permutation applied when the drawn element is a reflection, as for
            :class:`GroupElement`.
    """

    backend = GroupElement.backend

    def __init__(
        self, group: str | Group, prob: float = 1.0, lazy: bool = False, label_permutation: list[int] | None = None
    ) -> None:
        RandomizableTransform.__init__(self, prob)
        LazyTransform.__init__(self, lazy=lazy)
        self.group = _grid_group(group)
        self.label_permutation = _label_permutation(self.group, label_permutation)
        self._element = 0

    def randomize(self, data=None) -> None:
        super().randomize(None)
        if self._do_transform:
            self._element = int(self.R.randint(self.group.order))

    def __call__(self, img: torch.Tensor, randomize: bool = True, lazy: bool | None = None) -> torch.Tensor:
        """img: (C, *spatial); ``randomize=False`` reuses the last drawn element."""
        if randomize:
            self.randomize()
        lazy_ = self.lazy if lazy is None else lazy
        if self._do_transform:
            out = GroupElement(self.group, self._element, lazy=lazy_, label_permutation=self.label_permutation)(img)
        else:
            out = convert_to_tensor(img, track_meta=get_track_meta())
        self.push_transform(out, replace=True, lazy=lazy_)
        return out

    def inverse(self, data: torch.Tensor) -> torch.Tensor:
        xform_info = self.pop_transform(data)
        if not xform_info[TraceKeys.DO_TRANSFORM]:
            return data
        return GroupElement(self.group).inverse_transform(data, xform_info[TraceKeys.EXTRA_INFO])


def _label_keys(keys: tuple, label_keys: KeysCollection | None, label_permutation: object) -> tuple:
    """The label keys (a subset of ``keys``) that ``label_permutation`` applies to; () when there is none."""
    if label_keys is None and label_permutation is None:
        return ()
    if label_permutation is None:
        raise ValueError(f"label_keys={label_keys!r} is given but label_permutation is not: give both or neither")
    if label_keys is None:
        raise ValueError(
            f"label_permutation needs label_keys: which of keys {list(keys)} hold labels whose classes it permutes"
        )
    chosen = ensure_tuple(label_keys)
    missing = [k for k in chosen if k not in keys]
    if missing:
        raise ValueError(f"label_keys {missing} are not among keys {list(keys)}")
    return chosen


class GroupElementd(MapTransform, InvertibleTransform, LazyTransform):
    """Dictionary form of :class:`GroupElement`: the same element applied to every key (images and labels).

    Args:
        keys: keys of the (C, *spatial) items to transform.
        group, element, lazy: as for :class:`GroupElement`.
        allow_missing_keys: don't raise if a key is missing.
        label_keys: the keys (among ``keys``) holding lateral labels; required with ``label_permutation``.
        label_permutation: class permutation of a reflection for the ``label_keys`` (e.g. ``[0, 2, 1]``), as for
            :class:`GroupElement`; images are never permuted. ``Invertd`` undoes it on a prediction inverted with
            a label key's operations (``orig_keys="label"``).
    """

    backend = GroupElement.backend

    def __init__(
        self,
        keys: KeysCollection,
        group: str | Group,
        element: int = 0,
        allow_missing_keys: bool = False,
        lazy: bool = False,
        label_keys: KeysCollection | None = None,
        label_permutation: list[int] | None = None,
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        LazyTransform.__init__(self, lazy=lazy)
        self.transform = GroupElement(group, element, lazy=lazy)
        self.label_keys = _label_keys(self.keys, label_keys, label_permutation)
        self.label_transform = GroupElement(group, element, lazy=lazy, label_permutation=label_permutation)

    @LazyTransform.lazy.setter  # type: ignore[attr-defined]
    def lazy(self, val: bool) -> None:
        self._lazy = val
        self.transform.lazy = val
        self.label_transform.lazy = val

    def _transform_of(self, key: Hashable) -> GroupElement:
        return self.label_transform if key in self.label_keys else self.transform

    def __call__(self, data: Mapping[Hashable, torch.Tensor], lazy: bool | None = None) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        lazy_ = self.lazy if lazy is None else lazy
        for key in self.key_iterator(d):
            d[key] = self._transform_of(key)(d[key], lazy=lazy_)
        return d

    def inverse(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self._transform_of(key).inverse(d[key])
        return d


class RandGroupElementd(RandomizableTransform, MapTransform, InvertibleTransform, LazyTransform):
    """Dictionary form of :class:`RandGroupElement`: one random element per call, applied to every key.

    Args:
        keys: keys of the (C, *spatial) items to transform (e.g. ``["image", "label"]``).
        group: a grid group or its name.
        prob: probability of transforming (default 1.0).
        allow_missing_keys: don't raise if a key is missing.
        lazy: execute lazily.
        label_keys, label_permutation: lateral labels, as for :class:`GroupElementd` (the classes of the
            ``label_keys`` are permuted whenever the drawn element is a reflection).

    Bundle config: ``{"_target_": "monai_equivariant.transforms.RandGroupElementd", "keys": ["image", "label"],
    "group": "p4m", "label_keys": "label", "label_permutation": [0, 2, 1]}``.
    """

    backend = GroupElement.backend

    def __init__(
        self,
        keys: KeysCollection,
        group: str | Group,
        prob: float = 1.0,
        allow_missing_keys: bool = False,
        lazy: bool = False,
        label_keys: KeysCollection | None = None,
        label_permutation: list[int] | None = None,
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, prob)
        LazyTransform.__init__(self, lazy=lazy)
        self.group = _grid_group(group)
        self.label_keys = _label_keys(self.keys, label_keys, label_permutation)
        self.label_permutation = _label_permutation(self.group, label_permutation)
        self._element = 0

    def randomize(self, data=None) -> None:
        super().randomize(None)
        if self._do_transform:
            self._element = int(self.R.randint(self.group.order))

    def __call__(self, data: Mapping[Hashable, torch.Tensor], lazy: bool | None = None) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        self.randomize()
        lazy_ = self.lazy if lazy is None else lazy
        for key in self.key_iterator(d):
            if self._do_transform:
                permutation = self.label_permutation if key in self.label_keys else None
                d[key] = GroupElement(self.group, self._element, lazy=lazy_, label_permutation=permutation)(d[key])
            else:
                d[key] = convert_to_tensor(d[key], track_meta=get_track_meta())
            self.push_transform(d[key], replace=True, lazy=lazy_)
        return d

    def inverse(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            xform = self.pop_transform(d[key])
            if xform[TraceKeys.DO_TRANSFORM]:
                d[key] = GroupElement(self.group).inverse_transform(d[key], xform[TraceKeys.EXTRA_INFO])
        return d
