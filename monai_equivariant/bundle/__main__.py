"""``python -m monai_equivariant.bundle verify_net_in_out ...``: MONAI's bundle command with its arguments
checked first (see :func:`monai_equivariant.bundle.overrides.verify_net_in_out`); other commands are MONAI's
(``python -m monai.bundle``)."""

from monai_equivariant.bundle.overrides import verify_net_in_out

if __name__ == "__main__":
    from monai.utils import optional_import

    fire, _ = optional_import("fire")
    fire.Fire({"verify_net_in_out": verify_net_in_out})
