"""Preset networks that declare their defaults only (``P4UNet``, ``SE2UNet``, ``SE2CNN``...), like the builder hooks
of ``monai.networks.nets.DynUNet``: a subclass of a base net (``GroupUNet``, ``GroupCNN``) states

- ``preset_defaults``: new defaults of the base's parameters (``{"spatial_dims": 2, "channels": (8, ...)}``);
- ``preset_parameters``: parameters that take the place of the base's ``group`` (``num_rotations``), or none;
- ``preset_group(values)``: the group from the bound arguments (raising for values it refuses);

and :class:`Preset` builds its ``__init__`` with an explicit signature (``inspect.signature`` shows every
parameter, in the base's order): a new argument of the base appears in every preset with no change there.
"""

from __future__ import annotations

import inspect
from typing import Any, ClassVar

__all__ = ["Preset"]


class Preset:
    """Mixin of preset networks (see the module docstring); list it before the base net."""

    preset_defaults: ClassVar[dict[str, Any]] = {}
    preset_parameters: ClassVar[tuple[inspect.Parameter, ...]] = ()

    def preset_group(self, values: dict[str, Any]) -> Any:
        """The ``group`` passed to the base, from the bound arguments (``values``, the preset's own included)."""
        raise NotImplementedError

    def preset_finish(self, values: dict[str, Any]) -> None:
        """Called after the base's ``__init__`` (set attributes of the preset's own parameters)."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "preset_group" not in cls.__dict__:
            return
        base = next(b for b in cls.__mro__[1:] if not issubclass(b, Preset) and "__init__" in b.__dict__)
        signature = _preset_signature(inspect.signature(base.__init__), cls)
        own = [p.name for p in cls.preset_parameters]

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            bound = signature.bind(self, *args, **kwargs)
            bound.apply_defaults()
            values = dict(bound.arguments)
            values.pop("self")
            group = self.preset_group(values)
            base.__init__(self, group=group, **{k: v for k, v in values.items() if k not in own})
            self.preset_finish(values)

        __init__.__signature__ = signature  # type: ignore[attr-defined]
        __init__.__qualname__ = f"{cls.__qualname__}.__init__"
        __init__.__doc__ = f"See :class:`{cls.__name__}`."
        cls.__init__ = __init__  # type: ignore[misc]


def _preset_signature(base: inspect.Signature, cls: type) -> inspect.Signature:
    """The base's signature with ``group`` replaced by the preset's parameters and the preset's defaults applied
    (a default given to a required parameter makes the ones before it need one too)."""
    params: list[inspect.Parameter] = []
    for param in base.parameters.values():
        if param.name == "group":
            params.extend(cls.preset_parameters)
        else:
            params.append(param.replace(default=cls.preset_defaults.get(param.name, param.default)))
    unknown = set(cls.preset_defaults) - {p.name for p in params}
    if unknown:
        raise TypeError(f"{cls.__name__}.preset_defaults names no parameter of its base: {sorted(unknown)}")
    return base.replace(parameters=params)
