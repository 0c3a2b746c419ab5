"""Group transforms: exact, equal to Group.spatial_transform, affine-correct, invertible (Invertd), lazy, random."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from monai.data import CacheDataset, DataLoader, MetaTensor
from monai.transforms import Compose, EnsureChannelFirstd, Flip, Invertd, Rotate90, ScaleIntensityd

from monai_equivariant.groups import get_group
from monai_equivariant.transforms import GroupElement, GroupElementd, RandGroupElement, RandGroupElementd

GRID_GROUPS = ["trivial", "p4", "p4m", "D4", "D4h", "O", "Oh"]


def _image(group_name: str, channels: int = 2) -> MetaTensor:
    dims = get_group(group_name).spatial_dims
    shape = (channels, 4, 6) if dims == 2 else (channels, 3, 4, 5)  # unequal sides: axis permutations show
    affine = torch.eye(4, dtype=torch.float64)
    affine[:3, :3] = torch.tensor([[0.0, 2.0, 0.0], [1.5, 0.0, 0.0], [0.0, 0.0, 3.0]])
    affine[:3, 3] = torch.tensor([10.0, -5.0, 2.0])
    return MetaTensor(torch.arange(float(np.prod(shape))).reshape(shape), affine=affine)


def _voxel_world(img: MetaTensor) -> dict[float, tuple[float, ...]]:
    """value -> world coordinate of the voxel holding it (values are unique)."""
    dims = img.ndim - 1
    index = np.stack(np.meshgrid(*[np.arange(n) for n in img.shape[1:]], indexing="ij"), -1).reshape(-1, dims)
    homogeneous = np.zeros((index.shape[0], 4))
    homogeneous[:, :dims], homogeneous[:, 3] = index, 1.0
    world = homogeneous @ img.affine.numpy().T
    values = img.as_tensor()[0].reshape(-1).numpy()
    return {float(v): tuple(np.round(w[:3], 6)) for v, w in zip(values, world)}


@pytest.mark.parametrize("name", GRID_GROUPS)
def test_every_element_is_exact_matches_group_and_keeps_world_positions(name: str) -> None:
    group = get_group(name, 2 if name == "trivial" else None)
    image = _image(name)
    before = _voxel_world(image)
    for element in range(group.order):
        transform = GroupElement(group, element)
        out = transform(image)
        expected = group.spatial_transform(image.as_tensor()[None], element)[0]
        assert torch.equal(out.as_tensor(), expected)  # exact: a permutation of the voxels
        assert _voxel_world(out) == before  # the affine moved with the voxels: every value stays in place
        restored = transform.inverse(out)
        assert torch.equal(restored.as_tensor(), image.as_tensor())
        assert torch.allclose(restored.affine, image.affine) and not restored.applied_operations


def test_2d_affines_agree_with_monai_flip_and_rotate90() -> None:
    image = _image("p4m")
    group = get_group("p4m")
    for element in range(group.order):
        out = GroupElement(group, element)(image)
        matches = [
            Rotate90(k)(Flip(axis)(image) if axis is not None else image)
            for k, axis in itertools.product(range(4), (None, 0, 1))
        ]
        same = [m for m in matches if m.shape == out.shape and torch.equal(m.as_tensor(), out.as_tensor())]
        assert same and all(torch.allclose(m.affine, out.affine) for m in same)


@pytest.mark.parametrize("name", ["p4m", "Oh"])
def test_lazy_execution_equals_eager(name: str) -> None:
    image = _image(name)
    data = {"image": image, "label": (image > 10).float()}
    eager = Compose([GroupElementd(["image", "label"], name, 5), GroupElementd(["image", "label"], name, 3)])(data)
    lazy = Compose(
        [GroupElementd(["image", "label"], name, 5), GroupElementd(["image", "label"], name, 3)], lazy=True
    )(data)
    for key in data:
        assert torch.equal(lazy[key].as_tensor(), eager[key].as_tensor())
        # MONAI's lazy resampling returns a (d+1)² affine for 2D images (so do Rotate90d/Flipd): compare the
        # spatial block and the translation
        d = image.ndim - 1
        lazy_affine, eager_affine = lazy[key].affine, eager[key].affine
        assert torch.allclose(lazy_affine[:d, :d], eager_affine[:d, :d])
        assert torch.allclose(lazy_affine[:d, -1], eager_affine[:d, -1])


@pytest.mark.parametrize("name", GRID_GROUPS)
def test_random_element_reaches_every_element_and_invertd_restores_input(name: str) -> None:
    group = get_group(name, 2 if name == "trivial" else None)
    image = _image(name)
    data = {"image": image, "label": (image > 10).float()}
    rand = RandGroupElementd(["image", "label"], group).set_random_state(0)
    invert = Invertd(["image", "label"], transform=rand, orig_keys=["image", "label"], nearest_interp=False)
    seen = set()
    for draw in range(12 * group.order):
        out = rand(data)
        element = rand._element
        if element in seen and draw >= 3 * group.order:
            continue  # checked already; keep drawing until every element is reached
        seen.add(element)
        assert torch.equal(out["image"].as_tensor(), group.spatial_transform(image.as_tensor()[None], element)[0])
        assert torch.equal(out["label"].as_tensor(), group.spatial_transform(data["label"].as_tensor()[None], element)[0])
        restored = invert(out)
        for key in data:
            assert torch.equal(restored[key].as_tensor(), data[key].as_tensor())
            assert torch.allclose(restored[key].affine, data[key].affine)
    assert seen == set(range(group.order))


def test_array_random_transform_and_probability() -> None:
    image = _image("O")
    never = RandGroupElement("O", prob=0.0).set_random_state(0)
    assert torch.equal(never(image).as_tensor(), image.as_tensor())
    rand = RandGroupElement("O").set_random_state(1)
    seen = set()
    for _ in range(300):
        out = rand(image)
        seen.add(rand._element)
        assert torch.equal(rand.inverse(out).as_tensor(), image.as_tensor())
    assert seen == set(range(24))


def test_plain_tensors_and_numpy_inputs() -> None:
    group = get_group("p4")
    array = np.random.default_rng(0).standard_normal((1, 5, 7)).astype(np.float32)
    out = GroupElement("p4", 1)(torch.from_numpy(array))
    assert torch.equal(torch.as_tensor(out), group.spatial_transform(torch.from_numpy(array)[None], 1)[0])
    assert torch.equal(torch.as_tensor(GroupElement("p4", 1)(array)), torch.as_tensor(out))


def test_bad_input_gives_clear_errors() -> None:
    with pytest.raises(ValueError, match="3 spatial dims"):
        GroupElement("O", 1)(torch.zeros(1, 4, 4))
    with pytest.raises(IndexError, match="elements 0..3"):
        GroupElement("p4", 4)
    with pytest.raises(ValueError, match="cannot be applied exactly"):
        RandGroupElement("se2_8")
    with pytest.raises(ValueError, match="unknown group"):
        GroupElementd("image", "p5", 0)


def test_inside_compose_and_cache_dataset_pipeline() -> None:
    rng = np.random.default_rng(0)
    items = [
        {"image": rng.random((8, 8, 8)).astype(np.float32), "label": (rng.random((8, 8, 8)) > 0.5).astype(np.float32)}
        for _ in range(4)
    ]
    pipeline = Compose(
        [
            EnsureChannelFirstd(["image", "label"], channel_dim="no_channel"),
            ScaleIntensityd("image"),
            RandGroupElementd(["image", "label"], "O"),
        ]
    ).set_random_state(0)
    dataset = CacheDataset(items, pipeline, cache_rate=1.0, num_workers=0, progress=False)
    batch = next(iter(DataLoader(dataset, batch_size=2)))
    assert batch["image"].shape == (2, 1, 8, 8, 8) and batch["label"].shape == (2, 1, 8, 8, 8)
    sample = dataset[0]
    restored = Invertd(["image", "label"], transform=pipeline, orig_keys=["image", "label"])(sample)
    assert torch.equal(restored["label"][0].as_tensor(), torch.from_numpy(items[0]["label"]))


# ---------------------------------------------------------------------------------------------------------------
# lateral labels: label_permutation

PERM = [0, 2, 1, 3]  # background, left, right, a midline organ


def _lateral_item(name: str) -> dict[str, MetaTensor]:
    """An image and its labels (integer map and one-hot) of unequal sides, 4 classes."""
    image = _image(name, channels=1)
    classes = (image.as_tensor().long() % 4).float()
    onehot = torch.cat([(classes == c).float() for c in range(4)])
    return {"image": image, "label": MetaTensor(classes, affine=image.affine), "onehot": MetaTensor(onehot, affine=image.affine)}


@pytest.mark.parametrize("name", ["p4m", "D4h", "Oh"])
def test_label_permutation_permutes_values_and_channels_under_reflections_only(name: str) -> None:
    from monai_equivariant.layers.lateral_head import reflections

    group = get_group(name)
    item = _lateral_item(name)
    mirrored = reflections(group)
    assert mirrored.sum() * 2 == group.order
    for element in range(group.order):
        transform = GroupElementd(["image", "label", "onehot"], name, element, label_keys=["label", "onehot"],
                                  label_permutation=PERM)
        out = transform(item)
        move = {key: group.spatial_transform(item[key].as_tensor()[None], element)[0] for key in item}
        assert torch.equal(out["image"].as_tensor(), move["image"])  # images are never permuted
        expected_map = torch.tensor(PERM, dtype=torch.float32)[move["label"].long()] if mirrored[element] else move["label"]
        expected_onehot = move["onehot"][PERM] if mirrored[element] else move["onehot"]
        assert torch.equal(out["label"].as_tensor(), expected_map)
        assert torch.equal(out["onehot"].as_tensor(), expected_onehot)
        # the integer map and the one-hot map agree after the transform
        assert torch.equal(torch.cat([(out["label"] == c).float() for c in range(4)]).as_tensor(), out["onehot"].as_tensor())
        restored = transform.inverse(out)
        for key in item:
            assert torch.equal(restored[key].as_tensor(), item[key].as_tensor())
            assert torch.allclose(restored[key].affine, item[key].affine) and not restored[key].applied_operations


def test_random_lateral_transform_inverted_on_a_prediction_with_invertd() -> None:
    group = get_group("p4m")
    item = _lateral_item("p4m")
    rand = RandGroupElementd(["image", "label"], "p4m", label_keys="label", label_permutation=PERM).set_random_state(3)
    invert = Invertd("pred", transform=rand, orig_keys="label", nearest_interp=False)
    probabilities = torch.softmax(torch.randn(4, *item["image"].shape[1:]), 0)  # a "prediction" on the input grid
    seen = set()
    for _ in range(80):
        out = rand(item)
        seen.add(rand._element)
        # the prediction of the transformed image of an exactly lateral-equivariant net: P_g g·probabilities
        moved = torch.as_tensor(GroupElement("p4m", rand._element, label_permutation=PERM)(probabilities))
        out["pred"] = MetaTensor(moved, meta=out["label"].meta, applied_operations=out["label"].applied_operations)
        restored = invert(out)["pred"]
        assert torch.equal(restored.as_tensor(), probabilities)  # spatial move and class swap undone
        assert torch.equal(rand.inverse(out)["label"].as_tensor(), item["label"].as_tensor())
    assert seen == set(range(group.order))


def test_lateral_transform_is_lazy_and_array_forms_take_it() -> None:
    item = _lateral_item("Oh")
    keys = ["image", "label", "onehot"]
    steps = [GroupElementd(keys, "Oh", e, label_keys=["label", "onehot"], label_permutation=PERM) for e in (30, 7)]
    eager, lazy = Compose(steps)(item), Compose(steps, lazy=True)(item)
    for key in keys:
        assert torch.equal(lazy[key].as_tensor(), eager[key].as_tensor())
    label = item["label"]
    array = RandGroupElement("Oh", label_permutation=PERM).set_random_state(0)
    for _ in range(10):
        out = array(label)
        assert torch.equal(out.as_tensor(), GroupElement("Oh", array._element, label_permutation=PERM)(label).as_tensor())
        assert torch.equal(array.inverse(out).as_tensor(), label.as_tensor())


def test_label_permutation_refuses_bad_arguments_and_data() -> None:
    with pytest.raises(ValueError, match="label_permutation is given but group 'p4' has no reflections"):
        GroupElement("p4", 1, label_permutation=[0, 2, 1])
    with pytest.raises(ValueError, match="label_permutation must be a permutation"):
        RandGroupElement("p4m", label_permutation=[0, 2, 2])
    with pytest.raises(ValueError, match="label_permutation must swap classes in pairs"):
        GroupElement("Oh", 1, label_permutation=[1, 2, 0])
    with pytest.raises(TypeError, match="label_permutation must hold integers"):
        GroupElement("p4m", 1, label_permutation=[0, 2.0, 1])
    with pytest.raises(ValueError, match="label_permutation needs label_keys"):
        GroupElementd(["image", "label"], "p4m", 4, label_permutation=[0, 2, 1])
    with pytest.raises(ValueError, match="label_keys=.label. is given but label_permutation is not"):
        RandGroupElementd(["image", "label"], "p4m", label_keys="label")
    with pytest.raises(ValueError, match=r"label_keys \['seg'\] are not among keys"):
        RandGroupElementd(["image", "label"], "p4m", label_keys="seg", label_permutation=[0, 2, 1])
    for element in (4, 1):  # a reflection and a rotation check the label alike
        transform = GroupElement("p4m", element, label_permutation=[0, 2, 1])
        with pytest.raises(ValueError, match="label_permutation has 3 classes: a label must have 3 channels .* got 2"):
            transform(torch.zeros(2, 4, 4))
        with pytest.raises(ValueError, match="integer class values 0..2"):
            transform(torch.full((1, 4, 4), 3.0))
        with pytest.raises(ValueError, match="not all integers"):
            transform(torch.full((1, 4, 4), 0.5))
