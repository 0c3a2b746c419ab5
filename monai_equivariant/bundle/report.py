"""The evaluation report the bundles print after ``evaluate.json`` (test metrics, equivariance by angle or group
element, the exactness check), and the exactness check itself (on the net as the bundle runs it: through its
inferer, so a test-time group ensemble is checked too)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from monai_equivariant.groups import as_group
from monai_equivariant.metrics.equivariance_helper import eval_mode_restored
from monai_equivariant.utils import check_equivariance

__all__ = ["equivariance_errors", "print_classification_report", "print_segmentation_report"]


def equivariance_errors(
    network: torch.nn.Module, inferer, images: torch.Tensor, group: str, out_type: str = "plain"
) -> torch.Tensor:
    """max |f(g·x) − g·f(x)| / max |f(x)| for every element g of ``group``, where f = ``inferer(x, network)`` in
    eval mode, without gradients; the network's train/eval mode (each submodule's) is restored afterwards.

    Args:
        images: (B, C, *spatial) input batch.
        out_type: ``"plain"`` (segmentation logits) or ``"invariant"`` (classification logits).

    Returns:
        (|G|,) tensor, in element order.
    """
    with eval_mode_restored(network):
        return check_equivariance(lambda x: inferer(x, network), group, images, out_type=out_type, relative=True)


def _elements_text(group: str) -> str:
    order = as_group(group).order
    if group == "p4":
        return "the 90-degree rotations (0, 90, 180, 270)"
    if group == "O":
        return "the 24 cube rotations"
    return f"the {order} elements of {group}"


def _by_key(metrics: Mapping[str, float], prefix: str, fmt: str) -> str:
    return " ".join(k[len(prefix):] + ":" + fmt % v for k, v in metrics.items() if k.startswith(prefix))


def print_segmentation_report(metrics: Mapping[str, float], errors: torch.Tensor, group: str = "p4") -> None:
    """Print test Dice/IoU, the equivariance Dice by angle (and mean Dice/IoU/MAD), and the errors under ``group``."""
    print("test Dice", round(float(metrics["val_mean_dice"]), 4), "IoU", round(float(metrics["val_mean_iou"]), 4))
    means = " ".join(m + " %.3f" % metrics["equivariance_" + m] for m in ("dice", "iou", "mad"))
    print("equivariance dice of rotate(f(x)) vs f(rotate(x)) by angle (degrees):",
          _by_key(metrics, "equivariance_dice_", "%.3f"), "| mean", means)
    print(f"equivariance max|f(g.x) - g.f(x)| / max|f| for {_elements_text(group)}:", _errors_text(errors))


def print_classification_report(
    metrics: Mapping[str, float], errors: torch.Tensor, group: str = "p4", by: str = "angle (degrees)"
) -> None:
    """Print test AUC/accuracy (and FROC when measured), the class agreement under rotations by ``by`` (angle or
    group element) with the mean agreement and logit change, and the logit errors under ``group``."""
    print("test AUC", round(float(metrics["val_auc"]), 4), "accuracy", round(float(metrics["val_accuracy"]), 4))
    if "froc" in metrics:
        print("LUNA16 FROC", round(float(metrics["froc"]), 4))
    means = " ".join(m + " %.3f" % metrics["equivariance_" + m] for m in ("agreement", "logit_change"))
    print(f"equivariance agreement of f(rotate(x)) vs f(x) by {by}:",
          _by_key(metrics, "equivariance_agreement_", "%.2f"),
          "| mean", means)
    print(f"invariance max|f(g.x) - f(x)| / max|f| of the logits for {_elements_text(group)}:", _errors_text(errors))


def _errors_text(errors: torch.Tensor | Sequence[float]) -> str:
    values = [float(e) for e in (errors.tolist() if isinstance(errors, torch.Tensor) else errors)]
    if len(values) > 8:
        return "max %.1e" % max(values)
    return "[" + ", ".join("%.1e" % e for e in values) + "]"
