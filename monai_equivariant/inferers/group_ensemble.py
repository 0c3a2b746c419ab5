"""Test-time group ensemble: any network made exactly equivariant (or invariant) over a grid group at |G|× cost.

``GroupEnsembleInferer`` wraps any MONAI inferer. For each element g of the group it runs the wrapped inferer on
g·x; in ``"segmentation"`` mode it maps the output back (g⁻¹·f(g·x)) and averages, in ``"classification"`` mode
it averages the outputs f(g·x) (logits). The average over a group is exactly equivariant / invariant for
grid groups, whatever the network.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from monai.data.meta_tensor import MetaTensor
from monai.inferers import Inferer, SimpleInferer

from monai_equivariant.groups import Group, as_group

__all__ = ["GroupEnsembleInferer"]

_MODES = ("segmentation", "classification")


class GroupEnsembleInferer(Inferer):
    """Average a wrapped inferer's output over the elements of a grid group.

    Args:
        group: a grid group or its name (``"p4"``, ``"p4m"`` in 2D; ``"D4"``, ``"D4h"``, ``"O"``, ``"Oh"`` in 3D).
        inferer: the inferer run for every element (default ``monai.inferers.SimpleInferer()``; e.g. a
            ``SlidingWindowInferer`` for large images).
        mode: ``"segmentation"``: mean over g of g⁻¹·f(g·x) (outputs are spatial maps, (B, C, *spatial));
            ``"classification"``: mean over g of f(g·x) (outputs are logits, (B, C)).

    Usage: ``GroupEnsembleInferer("p4")(images, network)`` for images (B, C, H, W); works as the ``inferer``
    of ``SupervisedEvaluator`` and in bundle configs
    (``{"_target_": "monai_equivariant.inferers.GroupEnsembleInferer", "group": "p4"}``).
    """

    def __init__(self, group: str | Group, inferer: Inferer | None = None, mode: str = "segmentation") -> None:
        super().__init__()
        self.group = as_group(group)
        if not self.group.is_grid:
            raise ValueError(
                f"group {self.group.name!r} does not map the pixel grid onto itself; the ensemble is exact only for "
                "grid groups (p4, p4m, D4, D4h, O, Oh)"
            )
        if mode not in _MODES:
            raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
        self.inferer = SimpleInferer() if inferer is None else inferer
        self.mode = mode

    def __call__(self, inputs: torch.Tensor, network: Callable[..., Any], *args: Any, **kwargs: Any) -> torch.Tensor:
        """inputs (B, C_in, *spatial) -> the group-averaged output ((B, C_out, *spatial) or (B, C_out))."""
        dims = self.group.spatial_dims
        if inputs.dim() != dims + 2:
            raise ValueError(
                f"group {self.group.name!r} acts on (B, C, *spatial) inputs with {dims} spatial dims; "
                f"got shape {tuple(inputs.shape)}"
            )
        plain = inputs.as_tensor() if isinstance(inputs, MetaTensor) else inputs
        total: torch.Tensor | None = None
        for element in range(self.group.order):
            output = self.inferer(self.group.spatial_transform(plain, element), network, *args, **kwargs)
            if not isinstance(output, torch.Tensor):
                raise TypeError(
                    f"GroupEnsembleInferer averages tensor outputs; the wrapped inferer returned {type(output).__name__}"
                )
            output = output.as_tensor() if isinstance(output, MetaTensor) else output
            if self.mode == "segmentation":
                if output.dim() != dims + 2:
                    raise ValueError(
                        f"mode='segmentation' needs spatial outputs (B, C, *spatial) with {dims} spatial dims, got "
                        f"shape {tuple(output.shape)}; use mode='classification' for (B, C) logits"
                    )
                output = self.group.spatial_transform(output, int(self.group.inverse[element]))
            elif output.dim() != 2:
                raise ValueError(
                    f"mode='classification' averages (B, C) logits, got shape {tuple(output.shape)}: spatial maps "
                    "would be averaged without being mapped back; use mode='segmentation' for (B, C, *spatial)"
                )
            total = output if total is None else total + output
        mean = total / self.group.order
        if isinstance(inputs, MetaTensor) and self.mode == "segmentation":
            mean = MetaTensor(mean, meta=inputs.meta, applied_operations=inputs.applied_operations)
        return mean
