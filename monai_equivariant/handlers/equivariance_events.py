"""What :class:`~monai_equivariant.handlers.EquivarianceHandler` hands on after each measurement: the event it
fires and the report it leaves on the engine (``engine.state.equivariance[prefix]``), read by
:class:`~monai_equivariant.handlers.EquivarianceSaver` and by user handlers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ignite.engine import Engine, EventEnum

__all__ = ["EquivarianceEvents", "EquivarianceReport", "register_equivariance_events"]


class EquivarianceEvents(EventEnum):
    """Fired by :class:`EquivarianceHandler` after each measurement; ``engine.state.equivariance[prefix]`` then
    holds the :class:`EquivarianceReport`."""

    MEASURED = "equivariance_measured"


def register_equivariance_events(engine: Engine) -> None:
    """Register :class:`EquivarianceEvents` on ``engine`` once (the handler and the saver both call it)."""
    if not engine.has_registered_events(EquivarianceEvents.MEASURED):
        engine.register_events(*EquivarianceEvents)


@dataclass
class EquivarianceReport:
    """One measurement of every network on the fixed images.

    ``results``: network name -> {"axis" ("angle" or "element"), "values" (angles in degrees or element
    indices), "labels", "means": {measure: (A,)}, "per_image": {measure: (N, A)}}; ``network_name`` names the
    main (logged) network, ``measures`` the measures logged per angle/element (the first one is plotted)."""

    epoch: int
    network_name: str
    measures: tuple[str, ...]
    results: dict[str, dict[str, Any]] = field(default_factory=dict)
