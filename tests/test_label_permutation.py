"""Lateral labels under reflections: LateralGroupHead is exactly equivariant *with* the left/right swap
(f(g·x) = P_g g·f(x) on every element), exports and scripts; on a synthetic left/right task the invariant head
provably cannot separate left from right while the lateral head learns it; the transforms and the ensemble use the
same convention."""

from __future__ import annotations

import pickle

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from helpers import assert_matches

from monai_equivariant.groups import get_group
from monai_equivariant.inferers import GroupEnsembleInferer
from monai_equivariant.layers import GroupConv, GroupPool, LateralGroupHead, LiftingConv
from monai_equivariant.layers.lateral_head import reflections
from monai_equivariant.layers.plain import export
from monai_equivariant.transforms import GroupElementd

PERM = [0, 2, 1]  # background, left, right
SIZES = {2: [(9, 9), (8, 12)], 3: [(5, 5, 5), (4, 6, 7)]}


def _swapped(y: torch.Tensor, group, element: int) -> torch.Tensor:
    """P_g g·y for a plain (B, 3, *spatial) output."""
    y = group.spatial_transform(y, element)
    return y[:, PERM] if reflections(group)[element] else y


def _tiny_net(group_name: str, head: str = "lateral", fields: int = 4) -> nn.Sequential:
    """LiftingConv + GroupConv (ReLU after each) + a head: the lateral one, or the invariant one (group pooling and a
    1×1 conv)."""
    group = get_group(group_name)
    body = [LiftingConv(1, fields, group), nn.ReLU(), GroupConv(fields, fields, group), nn.ReLU()]
    if head == "lateral":
        return nn.Sequential(*body, LateralGroupHead(fields, len(PERM), group, PERM))
    conv = nn.Conv2d if group.spatial_dims == 2 else nn.Conv3d
    return nn.Sequential(*body, GroupPool(group.order), conv(fields, len(PERM), 1))


@pytest.mark.parametrize("name", ["p4m", "D4h"])
@torch.no_grad()
def test_lateral_head_and_a_net_with_it_are_exact_with_the_swap_on_every_element(name: str) -> None:
    group = get_group(name)
    torch.manual_seed(0)
    head = LateralGroupHead(3, 3, group, PERM, pool="max").eval()
    mean_head = LateralGroupHead(3, 3, group, PERM, pool="mean").eval()
    for module in (head, mean_head):
        module.bias.normal_()  # an asymmetric raw bias: the head must symmetrise it
    net = _tiny_net(name).eval()
    for spatial in SIZES[group.spatial_dims]:
        features = torch.randn(2, 3 * group.order, *spatial)
        image = torch.randn(2, 1, *spatial)
        outputs = {m: m(features) for m in (head, mean_head)}
        reference = net(image)
        for g in range(group.order):
            moved = group.transform(features, g, regular=True)
            for module, out in outputs.items():
                assert_matches(module(moved), _swapped(out, group, g), module, msg=f"{name} {spatial} g={g}")
            assert_matches(net(group.spatial_transform(image, g)), _swapped(reference, group, g), net,
                           msg=f"{name} net {spatial} g={g}")
        # it is not invariant: a reflection changes the labels (the swap is really there)
        g = int(reflections(group).nonzero()[0][0])
        assert float((net(group.spatial_transform(image, g)) - group.spatial_transform(reference, g)).abs().max()) > 1e-3


@torch.no_grad()
def test_lateral_head_exports_scripts_and_pickles() -> None:
    for name, spatial in (("p4m", (7, 9)), ("Oh", (3, 4, 5))):
        torch.manual_seed(1)
        head = LateralGroupHead(2, 3, name, PERM).eval()
        head.bias.normal_()
        x = torch.randn(2, 2 * get_group(name).order, *spatial)
        expected = head(x)
        plain = head.to_plain()
        assert not any(type(m).__module__.startswith("monai_equivariant") for m in plain.modules())
        for candidate in (plain, torch.jit.script(head), torch.jit.script(plain), pickle.loads(pickle.dumps(head))):
            assert_matches(candidate(x), expected, head)
        assert set(head.state_dict()) == {"weight", "bias"}  # the index buffers are not state
    net = _tiny_net("p4m").eval()
    image = torch.randn(1, 1, 10, 10)
    exported = export(net)
    assert not any(type(m).__module__.startswith("monai_equivariant") for m in exported.modules())
    assert_matches(exported(image), net(image), net)
    assert_matches(torch.jit.script(exported)(image), net(image), net)


def test_lateral_head_refuses_bad_arguments() -> None:
    with pytest.raises(ValueError, match="label_permutation is given but group 'p4' has no reflections"):
        LateralGroupHead(4, 3, "p4", PERM)
    with pytest.raises(ValueError, match="label_permutation has 3 entries but out_channels=4"):
        LateralGroupHead(4, 4, "p4m", PERM)
    with pytest.raises(ValueError, match="label_permutation must swap classes in pairs"):
        LateralGroupHead(4, 3, "p4m", [1, 2, 0])
    with pytest.raises(ValueError, match="pool must be"):
        LateralGroupHead(4, 3, "p4m", PERM, pool="sum")
    with pytest.raises(ValueError, match="in_channels must be a positive integer"):
        LateralGroupHead(0, 3, "p4m", PERM)
    with pytest.raises(ValueError, match=r"expects a \(B, 32, \*spatial\) group tensor"):
        LateralGroupHead(4, 3, "p4m", PERM)(torch.zeros(1, 8, 6, 6))


# ---------------------------------------------------------------------------------------------------------------
# the synthetic left/right task

_ORGAN = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 1.0]])
"""The left organ, an L-shaped blob; the right organ is its mirror image (as the right kidney is the left one's).
It is chiral: no rotation turns it into its mirror image, so only a reflection relates the two."""


def _left_right_images(n: int, size: int, gen: torch.Generator, symmetric: bool = False):
    """(n, 1, size, size) images with the left organ (label 1) at a random place left of the centre and the right
    organ (label 2) right of it, plus light noise; labels (n, size, size). ``symmetric``: the right half is the
    mirror image of the left half (noise included), so each image equals its own left-right mirror."""
    h, w = _ORGAN.shape
    images, labels = torch.zeros(n, 1, size, size), torch.zeros(n, size, size, dtype=torch.long)
    for i in range(n):
        for label, (lo, hi), organ in ((1, (1, size // 2 - w - 1), _ORGAN), (2, (size // 2 + 1, size - w - 1), _ORGAN.flip(-1))):
            r = int(torch.randint(1, size - h - 1, (1,), generator=gen))
            c = int(torch.randint(lo, hi, (1,), generator=gen))
            images[i, 0, r : r + h, c : c + w] += organ
            labels[i, r : r + h, c : c + w][organ > 0] = label
    images += 0.05 * torch.randn(images.shape, generator=gen)
    if symmetric:
        half = size // 2
        images[..., half:] = images[..., :half].flip(-1)
        labels[..., half:] = torch.tensor(PERM)[labels[..., :half].flip(-1)]
    return images, labels


def _dice(pred: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean Dice of the left and right channels over the whole set."""
    scores = [2 * float(((pred == c) & (labels == c)).sum()) / float((pred == c).sum() + (labels == c).sum()) for c in (1, 2)]
    return sum(scores) / 2


@torch.enable_grad()
def _trained(head: str, steps: int = 60) -> nn.Sequential:
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    net = _tiny_net("p4m", head)
    opt = torch.optim.Adam(net.parameters(), lr=0.03)
    for _ in range(steps):
        images, labels = _left_right_images(8, 16, gen)
        loss = F.cross_entropy(net(images), labels, weight=torch.tensor([0.2, 1.0, 1.0]))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net.eval()


@torch.no_grad()
def test_invariant_head_cannot_tell_left_from_right_and_the_lateral_head_learns_it() -> None:
    invariant, lateral = _trained("invariant"), _trained("lateral")
    gen = torch.Generator().manual_seed(1)
    images, labels = _left_right_images(16, 16, gen, symmetric=True)
    assert torch.equal(images, images.flip(-1))  # every test image is its own mirror image
    p_invariant, p_lateral = invariant(images).softmax(1), lateral(images).softmax(1)
    # what must be so, whatever the training: an invariant head gives a left pixel and its mirror (right) pixel the
    # same probabilities; the lateral head gives the mirror pixel the swapped ones
    assert_matches(p_invariant, p_invariant.flip(-1), invariant)
    assert_matches(p_lateral, p_lateral.flip(-1)[:, PERM], lateral)
    # so each left/right pixel pair gets one label from the invariant head: mean left/right Dice ≤ 1/2 (the best is
    # half the pairs called left, half right: Dice 2·(n/2)/(n + n) = 1/2 per channel)
    dice_invariant, dice_lateral = _dice(p_invariant.argmax(1), labels), _dice(p_lateral.argmax(1), labels)
    assert dice_invariant <= 0.5 + 1e-6
    assert dice_lateral >= 0.9, dice_lateral
    # on fresh images of the training distribution too
    images, labels = _left_right_images(16, 16, gen)
    assert _dice(invariant(images).argmax(1), labels) <= 0.6
    assert _dice(lateral(images).argmax(1), labels) >= 0.9


@torch.no_grad()
def test_transforms_ensemble_and_head_share_one_convention() -> None:
    """The lateral net predicts the labels that GroupElementd(label_permutation) makes of every p4m copy of an
    image, and the lateral ensemble of an already lateral-equivariant net is that net."""
    net = _trained("lateral")
    group = get_group("p4m")
    images, labels = _left_right_images(4, 16, torch.Generator().manual_seed(2))
    reference = net(images)
    for g in range(group.order):
        transform = GroupElementd(["image", "label"], group, g, label_keys="label", label_permutation=PERM)
        moved = [transform({"image": i, "label": l[None].float()}) for i, l in zip(images, labels)]
        moved_images = torch.stack([torch.as_tensor(m["image"]) for m in moved])
        moved_labels = torch.stack([torch.as_tensor(m["label"])[0].long() for m in moved])
        assert _dice(net(moved_images).argmax(1), moved_labels) >= 0.9
        assert torch.equal(net(moved_images).argmax(1), _swapped(reference, group, g).argmax(1))
    ensemble = GroupEnsembleInferer(group, label_permutation=PERM)
    assert_matches(ensemble(images, net), reference, net)


@torch.no_grad()
def test_lateral_head_plain_export_runs_in_onnxruntime() -> None:
    import io

    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    head = LateralGroupHead(2, 3, "D4h", PERM).eval()
    x = torch.randn(1, 2 * 16, 4, 5, 6)
    buffer = io.BytesIO()
    torch.onnx.export(head.to_plain(), (x,), buffer, dynamo=False, input_names=["x"])
    session = ort.InferenceSession(buffer.getvalue())
    assert_matches(torch.from_numpy(session.run(None, {"x": x.numpy()})[0]), head(x), head)
