"""The ``route`` of a whole network: one setting for every group conv in it (see ``GroupConv.route``)."""

from __future__ import annotations

import torch.nn as nn

from monai_equivariant.layers.conv import check_route, group_convs

__all__ = ["RoutedNetwork", "check_route", "network_route", "set_network_route"]


class RoutedNetwork:
    """Mixin for networks built of group convs: ``net.route`` reads and sets the route of every group conv.

    Setting validates first (the value, and for ``"input"`` that every group acts on the pixel grid by flips and
    axis permutations) and only then changes the layers, so a refused value leaves the net as it was. The layers
    with no input route although their group has one (strided, transposed, anisotropic kernels) take ``"filter"``
    when ``"input"`` is set. Reading gives the common route of the layers with a choice, or ``"mixed"`` when single
    layers were set differently afterwards.
    """

    __jit_unused_properties__ = ["route"]

    @property
    def route(self) -> str:
        return network_route(self)  # type: ignore[arg-type]

    @route.setter
    def route(self, value: str) -> None:
        set_network_route(self, value)  # type: ignore[arg-type]


def network_route(net: nn.Module) -> str:
    """The common route of the group convs of ``net`` that have a choice (an input route; of all of them when none
    has), ``"mixed"`` when they differ, ``"auto"`` for a net without group convs."""
    convs = group_convs(net)
    routes = {conv.route for conv in convs if conv.grid_action} or {conv.route for conv in convs}
    return routes.pop() if len(routes) == 1 else ("mixed" if routes else "auto")


def set_network_route(net: nn.Module, value: object) -> None:
    """Set ``value`` as the route of every group conv of ``net`` (validated before anything changes): ``"input"``
    needs groups acting on the pixel grid, and the layers without an input route of their own (strided, transposed,
    anisotropic kernels) then take ``"filter"``."""
    route = check_route(value)
    convs = group_convs(net)
    if route == "input":
        interpolating = sorted({conv.group_name for conv in convs if not conv.group.is_grid or conv.interpolated})
        if interpolating:
            raise ValueError(
                f"route='input' needs groups acting on the pixel grid by flips and axis permutations; "
                f"{type(net).__name__} has group convs of {', '.join(interpolating)}, which interpolate their kernels "
                "(use 'auto' or 'filter')"
            )
    for conv in convs:
        conv.route = route if conv.grid_action or route != "input" else "filter"
