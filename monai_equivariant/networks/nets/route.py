"""The ``route`` of a whole network: one setting for every group conv in it (see ``GroupConv.route``)."""

from __future__ import annotations

import torch.nn as nn

from monai_equivariant.layers.conv import check_route, group_convs

__all__ = ["RoutedNetwork", "check_route"]


class RoutedNetwork:
    """Mixin for networks built of group convs: ``net.route`` reads and sets the route of every group conv.

    Setting validates first (the value, and for ``"input"`` that every group conv acts on the pixel grid by
    flips and axis permutations) and only then changes the layers, so a refused value leaves the net as it was.
    Reading gives the common route, or ``"mixed"`` when single layers were set differently afterwards.
    """

    __jit_unused_properties__ = ["route"]

    @property
    def route(self) -> str:
        routes = {conv.route for conv in group_convs(self)}  # type: ignore[arg-type]
        return routes.pop() if len(routes) == 1 else ("mixed" if routes else "auto")

    @route.setter
    def route(self, value: str) -> None:
        set_network_route(self, value)  # type: ignore[arg-type]


def set_network_route(net: nn.Module, value: object) -> None:
    """Set ``value`` as the route of every group conv of ``net`` (validated before anything changes)."""
    route = check_route(value)
    convs = group_convs(net)
    if route == "input":
        interpolating = sorted({conv.group_name for conv in convs if not conv.grid_action})
        if interpolating:
            raise ValueError(
                f"route='input' needs groups acting on the pixel grid by flips and axis permutations; "
                f"{type(net).__name__} has group convs of {', '.join(interpolating)}, which interpolate their kernels "
                "(use 'auto' or 'filter')"
            )
    for conv in convs:
        conv.route = route
