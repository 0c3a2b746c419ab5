"""Lifting and group convolutions for any group and 2D/3D: expand the weight into a planar filter bank by
precomputed tables (:mod:`~monai_equivariant.layers.expansion`), then run one ``conv2d``/``conv3d`` (strided and
per-axis kernels too; the transposed conv in :mod:`~monai_equivariant.layers.transposed` shares the class)."""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Callable, List

import torch
import torch.nn as nn
import torch.nn.functional as F
from monai.networks.layers.factories import Conv

from monai_equivariant.groups import Group, as_group, kernel_shape
from monai_equivariant.layers.functional import CONV_FUNCTIONS
from monai_equivariant.layers.expansion import expand_filter, expand_with_tables, expansion_tables
from monai_equivariant.layers.filter_cache import FilterCache, plain_tensor
from monai_equivariant.layers.input_transform import (
    conv_by_input_transform,
    conv_by_input_transform_op,
    grid_matrices,
    input_transform_pays,
    input_transform_tables,
)

__all__ = ["ROUTES", "GroupConv", "LiftingConv", "check_route", "expand_filter", "group_convs"]

TRANSPOSED_CONV_FUNCTIONS: dict[int, Callable[..., torch.Tensor]] = {
    1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}
"""spatial_dims -> ``F.conv_transposeNd`` (the transposed twin of ``functional.CONV_FUNCTIONS``)."""

ROUTES = ("auto", "filter", "input")
"""The routes of a group conv (see :attr:`GroupConv.route`)."""


class _GroupConvNd(nn.Module):
    """Shared implementation of lifting and group convolution (see :func:`expand_filter`).

    Kernels may differ per axis (``kernel_size=(1, 3, 3)``) when every group element sends each axis to one of the
    same length (the group refuses the shape otherwise, naming the element). Sides are odd, except along a strided
    axis (``kernel_size = stride = 2``, padding 0: exact on even sides) and in the transposed conv.

    Exactness of a strided conv: with stride s, kernel k and padding p on an axis, the output samples a grid that
    the group maps onto itself exactly when ``(n + 2p - k) % s == 0`` for every input side n (the first and last
    windows then touch both padded ends); with the default padding ``k // 2`` and odd k that is
    ``(n - 1) % s == 0`` (odd n for s = 2), with even k ``n % s == 0``. The layer does not refuse other sizes (the
    networks do, naming the sizes they accept).

    The expansion tables are built at construction and kept as non-persistent buffers (``expand_index``,
    ``inverse_index``, ``tap_matrix``): they move with ``.to()`` and never appear in the state dict. In eval mode
    with gradients off the expanded bank is cached (:class:`FilterCache`: a plain attribute, reused only while
    the weight and bias are unchanged, as their version counters record it; never under tracing, scripting,
    ``torch.compile`` or ``torch.export``). The layer is scriptable and traceable as it is.
    """

    regular_input: bool = True
    # True for GroupConvTranspose: weight (C_in, C_out, |G|, *k), run by conv_transpose (no annotation: TorchScript
    # reads the instance attribute set in __init__)
    transposed = False
    __jit_unused_properties__ = ["route", "grid_action"]
    _route = "auto"  # the class default: also what a layer pickled before routes existed reads
    _grid_matrices = None  # list[int], set at construction (None: a layer pickled before it existed)
    __jit_ignored_attributes__ = ["_grid_matrices"]  # used by the input route only, which TorchScript skips

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        group: str | Group,
        kernel_size: int | Sequence[int] = 3,
        spatial_dims: int | None = None,
        padding: int | Sequence[int] | None = None,
        bias: bool = True,
        stride: int | Sequence[int] = 1,
    ) -> None:
        super().__init__()
        self.group = as_group(group, spatial_dims)
        self.spatial_dims = self.group.spatial_dims
        if int(in_channels) < 1 or int(out_channels) < 1:
            raise ValueError(f"in_channels and out_channels must be ≥ 1, got {in_channels}, {out_channels}")
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.kernel_shape = kernel_shape(kernel_size, self.spatial_dims)
        self.group.kernel_action(self.kernel_shape)  # validates the shape against the group, warms the table cache
        self.stride_shape = _per_axis(stride, self.spatial_dims, "stride", minimum=1)
        even = [axis for axis, side in enumerate(self.kernel_shape) if side % 2 == 0 and self.stride_shape[axis] == 1]
        if even and not self.transposed:
            raise ValueError(
                f"kernel_size {kernel_size!r}: a stride-1 group conv needs odd sides (a centre tap keeps the output on "
                f"the input's grid), axis {even[0]} has an even side; even sides go with a stride on that axis (e.g. "
                "kernel_size = stride = 2, padding 0, on even sizes) or in GroupConvTranspose"
            )
        self.padding_shape = (tuple(side // 2 for side in self.kernel_shape) if padding is None
                              else _check_padding(padding, self.spatial_dims))
        self.kernel_size = _compact(self.kernel_shape)  # an int for a cube (as before), else the sides
        self.stride, self.padding = _compact(self.stride_shape), _compact(self.padding_shape)
        self._stride, self._padding = list(self.stride_shape), list(self.padding_shape)  # for the scriptable forward
        self.transposed = type(self).transposed
        self.in_group_order = self.group.order if self.regular_input else 1
        self.group_order = self.group.order
        self.group_name = self.group.name
        self.input_kind = f"{self.in_channels} fields × |G|={self.group.order}" if self.regular_input else "plain"
        rows, columns = (self.in_channels, self.out_channels) if self.transposed else (self.out_channels,
                                                                                        self.in_channels)
        shape = (rows, columns, self.in_group_order) + self.kernel_shape
        self.weight = nn.Parameter(torch.empty(shape))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        tables = expansion_tables(self.group, columns, self.regular_input, self.kernel_shape)
        self.register_buffer("expand_index", tables["index"], persistent=False)
        self.register_buffer("inverse_index", tables["inverse"], persistent=False)
        self.register_buffer("tap_matrix", tables["matrix"], persistent=False)
        self.interpolated = bool(tables["matrix"].numel() > 0)
        self._grid_matrices = self._derive_grid_matrices()
        self._cache = FilterCache()
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """He (fan-in) initialisation over all input taps of one output field (for a transposed conv: the taps that
        reach one output pixel, prod(k / stride) per input channel)."""
        fan_in = self.in_channels * self.in_group_order * math.prod(self.kernel_shape)
        if self.transposed:
            fan_in = max(1, fan_in // math.prod(self.stride_shape))
        nn.init.normal_(self.weight, std=math.sqrt(2.0 / fan_in))
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    @property
    def expected_in_channels(self) -> int:
        """Channels of the input tensor: C_in·|G| for group tensors, C_in for plain tensors."""
        return self.in_channels * self.in_group_order

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, group={self.group.name}, "
            f"kernel_size={self.kernel_size}, padding={self.padding}, bias={self.bias is not None}"
            + ("" if self.stride == 1 else f", stride={self.stride}")
        )

    def kernel_mask(self) -> torch.Tensor | None:
        """(K,) mask on the kernel taps: the group's disk when its kernel action interpolates (se2_N for
        N ∉ {1, 2, 4}, k > 1); None for permutation actions (so se2_4 equals p4 exactly)."""
        return self.group.kernel_action(self.kernel_shape).mask

    def _expand(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Build the planar bank (C_out·|G|, C_in·|G_in|, *k) (transposed: (C_in·|G|, C_out·|G|, *k), the layout
        of ``conv_transpose``) and bias (C_out·|G|,) from the tables."""
        bank = expand_with_tables(
            self.weight, self.expand_index, self.inverse_index, self.tap_matrix, self.group_order, self.interpolated
        )
        bias = self.bias
        if bias is not None:
            bias = bias.repeat_interleave(self.group_order)
        return bank, bias

    @torch.jit.unused
    def expanded(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The planar filter bank (C_out·|G|, C_in·|G_in|, *k) and bias (C_out·|G|,); cached in eval/no-grad."""
        return self._cache.get(self, [self.weight, self.bias], self._expand)

    def _derive_grid_matrices(self) -> list[int]:
        """The group's integer matrices flattened (the input route's operators take them), or [] when the layer has
        no input route: the group interpolates its kernels, or the layer is strided, transposed, or has a kernel or
        padding that is not the same odd size on every axis (the route's tables act on cubic grids)."""
        kernel = self.kernel_shape
        cubic = len(set(kernel)) == 1 and kernel[0] % 2 == 1 and len(set(self.padding_shape)) == 1
        steps = all(s == 1 for s in self.stride_shape) and not self.transposed
        return grid_matrices(self.group) if self.group.is_grid and not self.interpolated and cubic and steps else []

    def __setstate__(self, state: dict) -> None:
        buffers = state.get("_buffers", {})
        if "reduce_index" in buffers:  # pickled before the rename (non-persistent: never in a state dict)
            state["_buffers"] = {("inverse_index" if k == "reduce_index" else k): v for k, v in buffers.items()}
        if "in_group_size" in state:
            state["in_group_order"] = state.pop("in_group_size")
        if "kernel_shape" not in state:  # pickled before per-axis kernels and strides: cubic, stride 1
            dims = len(state["_parameters"]["weight"].shape) - 3
            state["kernel_shape"] = (int(state["kernel_size"]),) * dims
            state["padding_shape"] = (int(state["padding"]),) * dims
            state["stride_shape"], state["stride"], state["transposed"] = (1,) * dims, 1, False
            state["_stride"], state["_padding"] = list(state["stride_shape"]), list(state["padding_shape"])
        super().__setstate__(state)
        if self.__dict__.get("_grid_matrices") is None:  # pickled before it existed: derive it here, not in forward
            self._grid_matrices = self._derive_grid_matrices()

    @property
    def grid_action(self) -> bool:
        """True when the group acts on the pixel grid by flips and axis permutations (the input route exists).

        Read from a plain list set at construction, so ``torch.compile`` never traces the group's NumPy data (it
        graph-broke on ``Group.is_grid``'s ``np.allclose``)."""
        return len(self._grid_matrices) > 0

    @property
    def route(self) -> str:
        """How the convolution is computed in eager code and under ``torch.compile`` (TorchScript, tracing,
        ``torch.export``/ONNX and ``export(net)`` always expand the filter): ``"filter"`` expands the
        filter bank and runs one plain conv; ``"input"`` convolves the |G| transformed copies of the input with
        the unexpanded filter (:mod:`~monai_equivariant.layers.input_transform`; grid groups only); ``"auto"``
        (default) takes the cached bank when there is one and otherwise whichever moves fewer entries. The
        outputs agree to float round-off and are exactly equivariant either way."""
        return self._route

    @route.setter
    def route(self, value: str) -> None:
        check_route(value)
        if value == "input" and not self.grid_action:
            raise ValueError(
                f"route='input' needs a group acting on the pixel grid by flips and axis permutations; "
                f"{self.group_name} interpolates its kernels"
            )
        self._route = value

    @torch.jit.unused
    def _transforms_input(self, x: torch.Tensor) -> bool:
        """True when this forward should take the input route (see :attr:`route`)."""
        if self._route == "filter" or not self.grid_action:
            return False
        if self._route == "auto" and not (self.training or torch.is_grad_enabled()):
            return False  # inference: the cached bank (see expanded()) costs nothing to build
        if torch.compiler.is_exporting():  # a deployed graph holds plain banks
            return False
        compiling = torch.compiler.is_compiling()
        spatial = x.shape[2:]
        size_out = self._output_side(int(spatial[0]))
        if any(s != spatial[0] for s in spatial) or size_out < 1:  # the tables act on cubic grids
            if self._route == "input":
                raise ValueError(f"route='input' needs equal spatial sizes, got {tuple(spatial)}")
            return False
        if self._route == "input":
            return True
        if not (x.is_contiguous() or x.is_contiguous(memory_format=_channels_last(self.spatial_dims))):
            return False  # an unusual layout: the filter route, which keeps it
        if not compiling and not (plain_tensor(x) and plain_tensor(self.weight)):  # functorch transforms
            return False
        out_numel = x.shape[0] * self.out_channels * self.group_order * size_out**self.spatial_dims
        return input_transform_pays(self.weight.numel(), x.numel(), out_numel, self.group_order)

    @torch.jit.unused
    def _forward_by_input_transform(self, x: torch.Tensor) -> torch.Tensor:
        if torch.compiler.is_compiling():  # sizes may be symbolic: the gathers as custom operators
            out = conv_by_input_transform_op(x, self.weight, self.bias, self._grid_matrices, self.regular_input,
                                             self.padding)
        else:
            size_in = int(x.shape[2])
            tables = input_transform_tables(self.group, self.regular_input, size_in, self._output_side(size_in),
                                            x.device)
            out = conv_by_input_transform(x, self.weight, self.bias, tables, self.padding)
        channels_last = _channels_last(self.spatial_dims)
        if not x.is_contiguous() and x.is_contiguous(memory_format=channels_last):
            out = out.contiguous(memory_format=channels_last)  # keep the layout the input came in
        return out

    def _output_side(self, side: int) -> int:
        """Spatial side of the output for an input side (stride 1, symmetric padding)."""
        return side + 2 * self.padding - self.kernel_size + 1

    def train(self, mode: bool = True) -> "_GroupConvNd":
        self._cache.clear()  # net.eval() refreshes the cache (after an edit its version check cannot see)
        return super().train(mode)

    def _apply(self, fn: Callable[[torch.Tensor], torch.Tensor], recurse: bool = True):  # type: ignore[override]
        self._cache.clear()
        return super()._apply(_fold_group_axis(fn, self.spatial_dims), recurse)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C_in·|G_in|, *spatial) -> (B, C_out·|G|, *spatial') with a plain (transposed) conv of the expanded
        bank."""
        if not torch.jit.is_tracing():  # a trace would only record the outcome (the nets check their input)
            self._check_input(x)
        if torch.jit.is_scripting() or torch.jit.is_tracing():
            bank, bias = self._expand()
        else:
            if self._transforms_input(x):
                return self._forward_by_input_transform(x)
            bank, bias = self.expanded()
        return self._convolve(x, bank, bias)

    def _convolve(self, x: torch.Tensor, bank: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        """The planar (transposed) convolution of ``x`` with the bank, with this layer's stride and padding."""
        if torch.jit.is_scripting():  # TorchScript cannot call a function looked up in a dict: the same op
            ones: List[int] = [1] * len(self._stride)
            zeros: List[int] = [0] * len(self._stride)
            return torch.convolution(x, bank, bias, self._stride, self._padding, ones, self.transposed, zeros, 1)
        return _conv_eager(x, bank, bias, self._stride, self._padding, self.transposed)

    def _check_input(self, x: torch.Tensor) -> None:
        if x.dim() != self.spatial_dims + 2:
            raise ValueError(
                "group conv (" + self.group_name + ") expects a (B, C, *spatial) tensor with "
                + str(self.spatial_dims) + " spatial dims, got " + str(x.dim()) + " dims"
            )
        expected = self.in_channels * self.in_group_order
        if x.shape[1] != expected:
            raise ValueError(
                "group conv (" + self.group_name + ") expects " + str(expected) + " input channels ("
                + self.input_kind + "), got " + str(x.shape[1])
            )

    def to_plain(self) -> nn.Module:
        """A plain ``nn.ConvNd`` (``nn.ConvTransposeNd`` for a transposed conv) holding the expanded bank; same
        outputs as this layer."""
        with torch.no_grad():
            bank, _ = self._expand()
            conv_cls = Conv[Conv.CONVTRANS if self.transposed else Conv.CONV, self.spatial_dims]
            channels = (bank.shape[0], bank.shape[1]) if self.transposed else (bank.shape[1], bank.shape[0])
            conv = conv_cls(
                *channels, self.kernel_shape, stride=self.stride_shape, padding=self.padding_shape,
                bias=self.bias is not None,
            ).to(device=bank.device, dtype=bank.dtype)
            conv.weight.copy_(bank)
            if self.bias is not None:
                conv.bias.copy_(self.bias.repeat_interleave(self.group_order))
        return conv


class LiftingConv(_GroupConvNd):
    """Lifting convolution: plain input (B, C_in, *spatial) -> group tensor (B, C_out·|G|, *spatial).

    Args:
        in_channels: input channels C_in.
        out_channels: output fields C_out (the tensor has C_out·|G| channels).
        group: group name or :class:`Group`.
        kernel_size: an int k or one side per axis (``(1, 3, 3)``); the group must map the kernel grid onto itself
            (D4h, not O, for (1, 3, 3)); interpolated groups (se2_N) need an odd square kernel.
        spatial_dims: optional; checked against the group.
        padding: an int or one per axis; defaults to k // 2 per axis (what exact equivariance needs).
        bias: one bias per output field, shared over the group.
        stride: an int or one per axis (default 1); exact on input sides n with ``(n + 2·padding - k) % stride == 0``
            (odd k, default padding: ``(n - 1) % stride == 0``), see :class:`_GroupConvNd`.
    """

    regular_input = False


class GroupConv(_GroupConvNd):
    """Group convolution: group tensor (B, C_in·|G|, *spatial) -> group tensor (B, C_out·|G|, *spatial).

    Arguments as :class:`LiftingConv`; ``in_channels`` counts input fields.
    """

    regular_input = True


def group_convs(module: nn.Module) -> list[_GroupConvNd]:
    """Every lifting and group conv in ``module`` (itself included)."""
    return [m for m in module.modules() if isinstance(m, _GroupConvNd)]


def check_route(route: object, name: str = "route") -> str:
    """``route`` if it is one of :data:`ROUTES`; else ValueError naming ``name``."""
    if not isinstance(route, str) or route not in ROUTES:
        raise ValueError(f"{name} must be one of {ROUTES}, got {route!r}")
    return route


def _check_padding(padding: object, spatial_dims: int = 1) -> tuple[int, ...]:
    """``padding`` (an int ≥ 0 or ``spatial_dims`` of them) per axis; ValueError naming it otherwise (a bool, a float
    such as 1.5, a negative int)."""
    return _per_axis(padding, spatial_dims, "padding", minimum=0,
                     hint=" (None: kernel_size // 2 per axis, which exact equivariance needs)")


def _per_axis(value: object, spatial_dims: int, name: str, minimum: int, hint: str = "") -> tuple[int, ...]:
    """``value`` (an int ≥ ``minimum`` or ``spatial_dims`` of them) as one int per axis; ValueError naming ``name``."""
    sides = tuple(value) if isinstance(value, Sequence) and not isinstance(value, str) else (value,) * spatial_dims
    if len(sides) != spatial_dims or any(
            isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < minimum for v in sides):
        raise ValueError(
            f"{name} must be an integer ≥ {minimum} or {spatial_dims} of them (one per spatial axis){hint}, "
            f"got {value!r}"
        )
    return tuple(int(v) for v in sides)


def _compact(sides: tuple[int, ...]) -> int | tuple[int, ...]:
    """One int when every axis has the same value (how the layers reported sizes before per-axis ones), else the
    tuple."""
    return sides[0] if len(set(sides)) == 1 else sides


@torch.jit.unused
def _conv_eager(x: torch.Tensor, bank: torch.Tensor, bias: torch.Tensor | None, stride: List[int],
                padding: List[int], transposed: bool) -> torch.Tensor:
    """``F.convNd`` / ``F.conv_transposeNd`` (what ``torch.autocast`` casts; ``torch.convolution`` it does not)."""
    functions = TRANSPOSED_CONV_FUNCTIONS if transposed else CONV_FUNCTIONS
    return functions[x.dim() - 2](x, bank, bias, stride=stride, padding=padding)


def _channels_last(spatial_dims: int) -> torch.memory_format:
    return torch.channels_last_3d if spatial_dims == 3 else torch.channels_last


def _fold_group_axis(fn: Callable[[torch.Tensor], torch.Tensor], spatial_dims: int) -> Callable:
    """Wrap an ``_apply`` function so a group weight (C_out, C_in, |G_in|, *k) goes through it as the planar weight
    (C_out, C_in·|G_in|, *k) it stands for: ``.to(memory_format=torch.channels_last)`` (2D) and
    ``channels_last_3d`` (3D) then apply to it as to a plain conv's weight instead of failing on a 5-D tensor."""

    def apply(t: torch.Tensor) -> torch.Tensor:
        if t.dim() != spatial_dims + 3:
            return fn(t)
        folded = t.reshape([t.shape[0], t.shape[1] * t.shape[2]] + list(t.shape[3:]))
        out = fn(folded)
        if out.shape != folded.shape:  # not a layout/dtype/device map: apply it to the weight as it is
            return fn(t)
        return out.unflatten(1, (t.shape[1], t.shape[2]))

    return apply
