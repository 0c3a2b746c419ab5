"""The former home of :class:`SteerableUNet` and :class:`PlainSteerableUNet` (pickled networks name it): both live
in :mod:`monai_equivariant.steerable.unet` and are re-exported here."""

from monai_equivariant.steerable.unet import PlainSteerableUNet, SteerableUNet

__all__ = ["PlainSteerableUNet", "SteerableUNet"]
