"""Steerable SE(2) layers on escnn that take and return plain ``(B, C, H, W)`` tensors.

Only the steerable convolution (and the batch norm of irreducible fields) needs escnn; pointwise and
spatial-only ops (ReLU on regular fields, 2×2 pooling, bilinear upsampling, skip concat) are torch's own,
which escnn's ``ReLU``, ``PointwiseMaxPool2D`` and ``R2Upsampling`` wrap anyway. Every layer here has
``to_plain()`` returning a plain-torch module with the same eval output (for
:func:`monai_equivariant.utils.export`).

This module imports escnn at import time, through :func:`monai_equivariant.steerable.escnn_compat.import_escnn`
(which names the ``steerable`` extra when escnn is missing and applies the package's escnn patches explicitly);
it is not imported by ``monai_equivariant.layers`` so that ``import monai_equivariant`` needs only the core.
:class:`~monai_equivariant.steerable.unet.SteerableUNet` imports it lazily. It is the one module that needs escnn
when imported (the installation tests pin it); the rest of the steerable code is the
:mod:`monai_equivariant.steerable` subpackage.

Channel layout: escnn's, which for regular fields is field-major ``c·|G| + g`` like the rest of the package.
"""

from __future__ import annotations

import copy
import functools
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from monai_equivariant.layers.filter_cache import FilterCache
from monai_equivariant.steerable.escnn_compat import ESCNN_MISSING, import_escnn  # noqa: F401 (ESCNN_MISSING: API)

escnn = import_escnn()  # ImportError naming the 'steerable' extra; applies the escnn patches (escnn_compat)
gspaces, enn = escnn.gspaces, escnn.nn
FieldType, GeometricTensor = enn.FieldType, enn.GeometricTensor

__all__ = [
    "FieldNormPool",
    "FieldNormReLU",
    "IIDBatchNorm",
    "SteerableConv",
    "field_type",
    "steerable_gspace",
    "trivial_type",
]


@functools.lru_cache(maxsize=None)
def steerable_gspace(num_rotations: int, reflections: bool = False, max_frequency: int = 3) -> Any:
    """escnn gspace: C_N (or D_N with reflections) for ``num_rotations=N >= 1``; SO(2) (or O(2)) for ``-1``,
    with irreps band-limited to ``max_frequency``."""
    if num_rotations != -1 and num_rotations < 1:
        raise ValueError(f"num_rotations must be a positive int (C_N) or -1 (SO(2)), got {num_rotations}")
    if max_frequency < 1:
        raise ValueError(f"max_frequency must be >= 1, got {max_frequency}")
    build = gspaces.flipRot2dOnR2 if reflections else gspaces.rot2dOnR2
    # O(2) kernel bases decompose tensor products of irreps numerically: instantiate frequencies up to 2·L.
    space = build(N=int(num_rotations), maximum_frequency=2 * int(max_frequency))
    space._monai_equivariant_key = (int(num_rotations), bool(reflections), int(max_frequency))  # for pickling
    return space


def _type_recipe(ftype: FieldType) -> tuple:
    """A picklable description of a field type built on a :func:`steerable_gspace` (escnn's representations hold
    local functions, which pickle cannot store): (gspace arguments, [("regular",) | ("irrep", id), ...])."""
    key = getattr(ftype.gspace, "_monai_equivariant_key", None)
    if key is None:
        raise TypeError("only steerable layers on a steerable_gspace(...) field type can be pickled")
    reps = []
    for rep in ftype.representations:
        if rep.name == "regular":
            reps.append(("regular",))
        elif hasattr(rep, "id"):
            reps.append(("irrep", tuple(rep.id) if isinstance(rep.id, tuple) else (rep.id,)))
        else:
            raise TypeError(f"cannot pickle a field of representation {rep.name!r} (regular fields and irreps only)")
    return key, reps


def _type_from_recipe(recipe: tuple) -> FieldType:
    key, reps = recipe
    space = steerable_gspace(*key)
    group = space.fibergroup
    return FieldType(space, [space.regular_repr if r[0] == "regular" else group.irrep(*r[1]) for r in reps])


def _rebuild(cls: type, args: tuple, kwargs: dict, state: dict, training: bool) -> nn.Module:
    """Unpickle a steerable layer: build it from its field types again, then load its state."""
    module = cls(*[_type_from_recipe(a) for a in args], **kwargs)
    module.load_state_dict(state)
    return module.train(training)


class _PicklableByRecipe:
    """Pickles an escnn-backed layer as (field-type recipes, constructor kwargs, state dict), since escnn's
    representations cannot be pickled; ``copy.deepcopy`` keeps its usual member-wise copy."""

    _recipe: tuple

    def __reduce_ex__(self, protocol: int):
        types_, kwargs = self._recipe
        state = {k: v.detach().clone() for k, v in self.state_dict().items()}  # type: ignore[attr-defined]
        args = tuple(_type_recipe(t) for t in types_)
        return _rebuild, (type(self), args, dict(kwargs), state, self.training)  # type: ignore[attr-defined]

    def __deepcopy__(self, memo: dict):
        import copy

        new = type(self).__new__(type(self))
        memo[id(self)] = new
        new.__dict__.update(copy.deepcopy(self.__dict__, memo))
        return new


def trivial_type(gspace: Any, channels: int) -> FieldType:
    """``channels`` scalar (invariant) fields: the type of a plain image."""
    return FieldType(gspace, int(channels) * [gspace.trivial_repr])


def field_type(gspace: Any, fields: int, max_frequency: int = 3) -> FieldType:
    """``fields`` hidden fields: regular representations for finite groups; for SO(2)/O(2) each field is the
    band-limited bundle of irreps of frequency 0..``max_frequency`` (each irrep its own escnn field)."""
    group = gspace.fibergroup
    if group.order() > 0:
        return FieldType(gspace, int(fields) * [gspace.regular_repr])
    bundle = [group.irrep(*irrep_id) for irrep_id in group.bl_irreps(int(max_frequency))]
    return FieldType(gspace, int(fields) * bundle)


_STRUCTURAL = ("filter", "expanded_bias", "bias_expansion", "_basisexpansion.")


def _drop_structural_tensors(state_dict: dict, prefix: str, *args: Any) -> None:
    """Load-state-dict pre-hook: ignore what escnn checkpoints carry besides parameters (the ``filter`` /
    ``expanded_bias`` buffers of eval mode, the sampled basis and index tables), all rebuilt from the types."""
    for key in [k for k in state_dict if k.startswith(prefix)]:
        if key[len(prefix):].startswith(_STRUCTURAL):
            del state_dict[key]


def _private_copy(module: nn.Module) -> nn.Module:
    """A copy of an escnn basis module (and its descendants) that shares no buffer or submodule with ``module``; its
    buffers are non-persistent (they follow from the field types).

    escnn hands one ``SingleBlockBasisExpansion`` to every layer with the same basis (its module-level
    ``_stored_filters``), so without a copy ``.double()`` / ``.to(device)`` of one network would move the sampled
    basis of every other network built in the process (seen: "expected scalar type Float but found Double" when
    building a SteerableUNet after another one was made float64)."""
    private = copy.copy(module)
    private._buffers = {name: None if b is None else b.clone() for name, b in module._buffers.items()}
    private._non_persistent_buffers_set = set(private._buffers)
    private._parameters = dict(module._parameters)
    private._modules = {name: None if c is None else _private_copy(c) for name, c in module._modules.items()}
    return private


class SteerableConv(_PicklableByRecipe, enn.R2Conv):
    """escnn ``R2Conv`` on plain tensors ``(B, in_type.size, H, W) -> (B, out_type.size, H, W)``, "same" padding.

    Differences from ``R2Conv``, all for deployment and speed:
      - state-dict keys do not depend on the mode: the expanded filter is cached in eval mode (with gradients
        off) as a plain attribute, never as the ``filter``/``expanded_bias`` buffers escnn adds and removes in
        ``train()``/``eval()``; the state dict holds only ``weights`` and ``bias`` (the sampled basis and
        index tables are non-persistent buffers), and escnn checkpoints carrying those extras still load;
      - the cache (:class:`FilterCache`) is reused only while the parameters are unchanged as their version
        counters record it (escnn rebuilds it only on a train -> eval switch; see the cache's module for the
        edits that bypass the counter);
      - it pickles (``torch.save(net)``) as field-type recipes plus its state dict, since escnn's
        representations hold local functions;
      - construction skips escnn's uncached ``generalized_he_init`` (seconds for wide layers) and uses
        :meth:`reset_parameters`: Gaussian basis coefficients scaled so the expanded filter has He variance;
      - ``to_plain()`` returns an ``nn.Conv2d`` holding the expanded filter.
    """

    def __init__(
        self, in_type: FieldType, out_type: FieldType, kernel_size: int = 3, bias: bool = True, **kwargs: Any
    ) -> None:
        """Args: escnn input/output field types, odd ``kernel_size``, ``bias``; other kwargs go to ``R2Conv``
        (e.g. ``frequencies_cutoff``, ``rings``, ``sigma``)."""
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd for exact equivariance, got {kernel_size}")
        super().__init__(
            in_type, out_type, kernel_size, padding=kernel_size // 2, bias=bias, initialize=False, **kwargs
        )
        self._recipe = ((in_type, out_type), dict(kernel_size=kernel_size, bias=bias, **kwargs))  # for pickling
        for name in ("filter", "expanded_bias"):
            if name in self._buffers:
                del self._buffers[name]
        # The sampled basis, index tables and bias expansion follow from the field types: keep them out of the
        # state dict (escnn's index buffers are also overlapping views that load_state_dict cannot copy into), and
        # give this layer its own copies of escnn's shared basis modules.
        for name, buffer in list(self._buffers.items()):
            if buffer is not None:
                self.register_buffer(name, buffer.clone(), persistent=False)
        for name, child in list(self._modules.items()):
            if child is not None:
                self._modules[name] = _private_copy(child)
        self._cache = FilterCache()
        self._register_load_state_dict_pre_hook(_drop_structural_tensors)
        self.reset_parameters()

    def reset_parameters(self, gain: float = 2.0) -> None:
        """He init of the expanded filter: E[sum over inputs and taps of filter²] = ``gain`` per output channel."""
        with torch.no_grad():
            self.weights.normal_()
            bank = self.basisexpansion(self.weights)
            mean_square_fan_in = bank.pow(2).sum() / bank.shape[0]
            self.weights.mul_(torch.sqrt(gain / mean_square_fan_in.clamp_min(1e-12)))
            if self.bias is not None:
                self.bias.zero_()

    def expanded(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(filter (out, in, k, k), bias (out,) or None) from the basis coefficients; cached in eval/no-grad."""
        return self._cache.get(self, [self.weights, self.bias], self.expand_parameters)

    def train(self, mode: bool = True) -> "SteerableConv":
        self._cache.clear()
        return nn.Module.train(self, mode)  # skip escnn's train(), which adds/removes buffers

    def _apply(self, fn, recurse: bool = True):  # type: ignore[override]
        self._cache.clear()
        return super()._apply(fn, recurse)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        """(B, in_type.size, H, W) -> (B, out_type.size, H, W)."""
        bank, bias = self.expanded()
        return F.conv2d(x, bank, bias, stride=self.stride, padding=self.padding, dilation=self.dilation)

    def to_plain(self) -> nn.Conv2d:
        """An ``nn.Conv2d`` with the expanded filter; same outputs as this layer."""
        with torch.no_grad():
            bank, bias = self.expand_parameters()
        conv = nn.Conv2d(
            self.in_type.size, self.out_type.size, self.kernel_size, padding=self.padding, bias=bias is not None
        )
        conv.weight.data.copy_(bank)
        if bias is not None:
            conv.bias.data.copy_(bias)
        return conv.to(bank.device)


class IIDBatchNorm(_PicklableByRecipe, nn.Module):
    """escnn ``IIDBatchNorm2d`` on plain tensors: full batch norm on invariant components, norm-only scaling of
    the others (one statistic per field).

    ``to_plain()`` returns the eval-mode map as a 1×1 ``nn.Conv2d`` (it is affine; escnn's own export refuses
    field types whose irreps are interleaved, as in the band-limited bundles).
    """

    def __init__(self, in_type: FieldType, **kwargs: Any) -> None:
        super().__init__()
        self.norm = enn.IIDBatchNorm2d(in_type, **kwargs)
        self._recipe = ((in_type,), dict(kwargs))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_type.size, H, W) -> same shape, float32 under autocast (like torch's batch norm; escnn's
        norm mixes the input dtype with float32 statistics otherwise)."""
        if torch.is_autocast_enabled(x.device.type):
            with torch.autocast(device_type=x.device.type, enabled=False):
                return self.norm(GeometricTensor(x.float(), self.norm.in_type)).tensor
        return self.norm(GeometricTensor(x, self.norm.in_type)).tensor

    def to_plain(self) -> nn.Conv2d:
        """The eval-mode affine map ``A x + c``, read off by probing with 0 and the unit vectors."""
        size = self.norm.in_type.size
        reference = next(b for b in self.norm.buffers() if b.is_floating_point())
        was_training = self.norm.training
        self.norm.eval()
        with torch.no_grad():
            probe = torch.cat([torch.zeros(1, size), torch.eye(size)]).to(reference.device, reference.dtype)
            out = self.forward(probe.view(size + 1, size, 1, 1)).view(size + 1, size)
        self.norm.train(was_training)
        shift = out[0]
        conv = nn.Conv2d(size, size, 1).to(reference.device, reference.dtype)
        conv.weight.data.copy_((out[1:] - shift).t().reshape(size, size, 1, 1))
        conv.bias.data.copy_(shift)
        return conv


def _field_layout(ftype: FieldType) -> tuple[list[int], list[int], list[int]]:
    """(channels of trivial 1-d fields, channels of the other fields flattened, their field sizes)."""
    trivial, others, sizes, start = [], [], [], 0
    for rep in ftype.representations:
        if rep.size == 1 and rep.is_trivial():
            trivial.append(start)
        else:
            others.extend(range(start, start + rep.size))
            sizes.append(rep.size)
        start += rep.size
    return trivial, others, sizes


class FieldNormReLU(nn.Module):
    """Equivariant nonlinearity for any field type: ReLU on invariant scalar fields, and escnn's norm-ReLU
    ``v · relu(|v| - b) / |v|`` (``b = exp(log_bias)`` learnt per field) on every other field.

    Plain torch (scriptable); fields of different sizes are handled by one gather/scatter.
    Input/output (B, ftype.size, H, W).
    """

    def __init__(self, ftype: FieldType, eps: float = 1e-6) -> None:
        super().__init__()
        trivial, others, sizes = _field_layout(ftype)
        self.eps = float(eps)
        self.register_buffer("trivial_index", torch.tensor(trivial, dtype=torch.long), persistent=False)
        self.register_buffer("other_index", torch.tensor(others, dtype=torch.long), persistent=False)
        field_of = [f for f, s in enumerate(sizes) for _ in range(s)]  # field id of each "other" channel
        self.register_buffer("field_of_channel", torch.tensor(field_of, dtype=torch.long), persistent=False)
        self.num_fields = len(sizes)
        self.log_bias = nn.Parameter(torch.zeros(len(sizes)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.zeros_like(x)
        if self.trivial_index.numel() > 0:
            out[:, self.trivial_index] = torch.relu(x[:, self.trivial_index])
        if self.other_index.numel() > 0:
            v = x[:, self.other_index]
            shape = [x.shape[0], self.num_fields] + list(x.shape[2:])
            squares = torch.zeros(shape, dtype=x.dtype, device=x.device).index_add(1, self.field_of_channel, v * v)
            norms = squares.clamp_min(self.eps * self.eps).sqrt()
            bias = torch.exp(self.log_bias).to(x.dtype).view(1, -1, 1, 1)
            scale = torch.relu(norms - bias) / norms
            out[:, self.other_index] = v * scale[:, self.field_of_channel]
        return out


class FieldNormPool(nn.Module):
    """Invariant map: the norm of every field, (B, ftype.size, H, W) -> (B, len(ftype), H, W) (escnn's NormPool
    in plain torch)."""

    def __init__(self, ftype: FieldType, eps: float = 1e-6) -> None:
        super().__init__()
        field_of = [f for f, rep in enumerate(ftype.representations) for _ in range(rep.size)]
        self.register_buffer("field_of_channel", torch.tensor(field_of, dtype=torch.long), persistent=False)
        self.num_fields = len(ftype)
        self.eps = float(eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = [x.shape[0], self.num_fields] + list(x.shape[2:])
        squares = torch.zeros(shape, dtype=x.dtype, device=x.device).index_add(1, self.field_of_channel, x * x)
        return squares.clamp_min(self.eps * self.eps).sqrt()
