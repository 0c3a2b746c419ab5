"""Test-time group ensemble: any network made exactly equivariant (or invariant) over a grid group at |G|× cost.

``GroupEnsembleInferer`` wraps any MONAI inferer. For each element g of the group it runs the wrapped inferer on
g·x; in ``"segmentation"`` mode it maps the output back (g⁻¹·f(g·x)) and averages, in ``"classification"`` mode
it averages the outputs f(g·x) (logits). The average over a group is exactly equivariant / invariant for
grid groups, whatever the network.

The |G| transformed copies run as one batch (the copies of every input concatenated along the batch axis), in
calls of at most ``max_batch`` inputs; copies whose spatial shape differs (a 90° turn of a non-square image) go to
separate calls. With lateral labels (``label_permutation``) each output of a reflection is also permuted back
before averaging, so the ensemble is equivariant *with* the swap: E(g·x) = P_g g·E(x).
"""

from __future__ import annotations

import numbers
from typing import Any, Callable

import numpy as np
import torch
from monai.data.meta_tensor import MetaTensor
from monai.inferers import Inferer, SimpleInferer

from monai_equivariant.groups import Group, as_group
from monai_equivariant.layers.lateral_head import check_label_permutation, element_label_permutation

__all__ = ["GroupEnsembleInferer"]

_MODES = ("segmentation", "classification")


class GroupEnsembleInferer(Inferer):
    """Average a wrapped inferer's output over the elements of a grid group.

    Args:
        group: a grid group or its name (``"p4"``, ``"p4m"`` in 2D; ``"D4"``, ``"D4h"``, ``"O"``, ``"Oh"`` in 3D).
        inferer: the inferer run on the transformed copies (default ``monai.inferers.SimpleInferer()``; e.g. a
            ``SlidingWindowInferer`` for large images).
        mode: ``"segmentation"``: mean over g of P_g g⁻¹·f(g·x) (outputs are spatial maps, (B, C, *spatial));
            ``"classification"``: mean over g of P_g f(g·x) (outputs are logits, (B, C)).
        label_permutation: lateral classes: the channel permutation of a reflection (a list, e.g. ``[0, 2, 1]``
            for background, left, right; channel c of a reflected output holds channel ``perm[c]``). The outputs
            of the reflections (det −1) are permuted back before averaging; the group must contain reflections
            and the outputs must have ``len(label_permutation)`` channels. None (default): P_g = identity.
        max_batch: the most inputs per call of the wrapped inferer. The B inputs' |G| transformed copies are
            concatenated along the batch axis and cut into calls of at most ``max_batch``; None (default) runs them
            in one call of B·|G| (one per distinct spatial shape). ``max_batch=B`` gives one call per element (the
            sequential ensemble); lower it when |G|·B inputs do not fit in memory.

    Usage: ``GroupEnsembleInferer("p4")(images, network)`` for images (B, C, H, W); works as the ``inferer``
    of ``SupervisedEvaluator`` and in bundle configs
    (``{"_target_": "monai_equivariant.inferers.GroupEnsembleInferer", "group": "p4m", "max_batch": 16,
    "label_permutation": [0, 2, 1]}``). Extra ``*args, **kwargs`` go to every call unchanged.
    """

    def __init__(
        self,
        group: str | Group,
        inferer: Inferer | None = None,
        mode: str = "segmentation",
        label_permutation: list[int] | None = None,
        max_batch: int | None = None,
    ) -> None:
        super().__init__()
        self.group = as_group(group)
        if not self.group.is_grid:
            raise ValueError(
                f"group {self.group.name!r} does not map the pixel grid onto itself; the ensemble is exact only for "
                "grid groups (p4, p4m, D4, D4h, O, Oh)"
            )
        if mode not in _MODES:
            raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
        if max_batch is not None and (isinstance(max_batch, bool) or not isinstance(max_batch, numbers.Integral)):
            raise TypeError(f"max_batch must be a positive integer or None, got {max_batch!r}")
        if max_batch is not None and max_batch < 1:
            raise ValueError(f"max_batch must be a positive integer (the most inputs per call) or None, got {max_batch}")
        self.inferer = SimpleInferer() if inferer is None else inferer
        self.mode = mode
        self.label_permutation = (
            None if label_permutation is None else check_label_permutation(label_permutation, self.group)
        )
        self.max_batch = None if max_batch is None else int(max_batch)

    def _calls(self, batch: int, spatial: tuple[int, ...]) -> list[list[tuple[int, int, int]]]:
        """The calls of the wrapped inferer: each a list of pieces (element, first row, end row) whose transformed
        copies have one spatial shape and together at most ``max_batch`` rows; the elements grouped by the shape
        of their copies (in order of first appearance), in order within a shape."""
        cap = batch * self.group.order if self.max_batch is None else self.max_batch
        shapes = [
            tuple(int(n) for n in np.abs(np.round(matrix)) @ np.asarray(spatial)) for matrix in self.group.matrices
        ]
        elements = sorted(range(self.group.order), key=lambda g: shapes.index(shapes[g]))
        calls: list[list[tuple[int, int, int]]] = []
        current: list[tuple[int, int, int]] = []
        filled, shape = 0, None
        for element in elements:
            moved = shapes[element]
            if current and moved != shape:
                calls.append(current)
                current, filled = [], 0
            shape, start = moved, 0
            while start < batch:
                stop = min(batch, start + cap - filled)
                current.append((element, start, stop))
                filled, start = filled + stop - start, stop
                if filled == cap:
                    calls.append(current)
                    current, filled = [], 0
        if current:
            calls.append(current)
        return calls

    def _check_output(self, output: Any, rows: int, batch: int) -> torch.Tensor:
        """The wrapped inferer's output for ``rows`` copies, checked; messages give its shape per ``batch`` inputs
        (the shape the caller's batch would have had)."""
        if not isinstance(output, torch.Tensor):
            raise TypeError(
                f"GroupEnsembleInferer averages tensor outputs; the wrapped inferer returned {type(output).__name__}"
            )
        output = output.as_tensor() if isinstance(output, MetaTensor) else output
        dims, shape = self.group.spatial_dims, (batch, *output.shape[1:])
        if self.mode == "segmentation" and output.dim() != dims + 2:
            raise ValueError(
                f"mode='segmentation' needs spatial outputs (B, C, *spatial) with {dims} spatial dims, got "
                f"shape {shape}; use mode='classification' for (B, C) logits"
            )
        if self.mode == "classification" and output.dim() != 2:
            raise ValueError(
                f"mode='classification' averages (B, C) logits, got shape {shape}: spatial maps "
                "would be averaged without being mapped back; use mode='segmentation' for (B, C, *spatial)"
            )
        if output.shape[0] != rows:
            raise ValueError(
                f"the wrapped inferer returned {output.shape[0]} outputs for a batch of {rows} inputs (transformed copies)"
            )
        if self.label_permutation is not None and output.shape[1] != len(self.label_permutation):
            raise ValueError(
                f"label_permutation has {len(self.label_permutation)} classes but the outputs have "
                f"{output.shape[1]} channels (shape {shape})"
            )
        return output

    def _back(self, output: torch.Tensor, element: int) -> torch.Tensor:
        """P_g g⁻¹·output (segmentation) or P_g output (classification) for the outputs of element g."""
        if self.mode == "segmentation":
            output = self.group.spatial_transform(output, int(self.group.inverse[element]))
        permutation = element_label_permutation(self.label_permutation, self.group, element)
        if permutation is not None:
            output = output.index_select(1, torch.as_tensor(permutation, device=output.device))
        return output

    def __call__(self, inputs: torch.Tensor, network: Callable[..., Any], *args: Any, **kwargs: Any) -> torch.Tensor:
        """inputs (B, C_in, *spatial) -> the group-averaged output ((B, C_out, *spatial) or (B, C_out))."""
        dims = self.group.spatial_dims
        if inputs.dim() != dims + 2:
            raise ValueError(
                f"group {self.group.name!r} acts on (B, C, *spatial) inputs with {dims} spatial dims; "
                f"got shape {tuple(inputs.shape)}"
            )
        if inputs.shape[0] == 0:
            raise ValueError(f"GroupEnsembleInferer needs at least one input, got shape {tuple(inputs.shape)}")
        plain = inputs.as_tensor() if isinstance(inputs, MetaTensor) else inputs
        total: torch.Tensor | None = None
        for call in self._calls(plain.shape[0], tuple(plain.shape[2:])):
            batch = torch.cat([self.group.spatial_transform(plain[start:stop], g) for g, start, stop in call])
            output = self._check_output(self.inferer(batch, network, *args, **kwargs), batch.shape[0], plain.shape[0])
            row = 0
            for element, start, stop in call:
                back = self._back(output[row : row + stop - start], element)
                row += stop - start
                if total is None:
                    total = back.new_zeros((plain.shape[0], *back.shape[1:]))
                total[start:stop] += back
        mean = total / self.group.order
        if isinstance(inputs, MetaTensor) and self.mode == "segmentation":
            mean = MetaTensor(mean, meta=inputs.meta, applied_operations=inputs.applied_operations)
        return mean
