"""The registered MONAI twins (basicunet_p4, segresnet_p4, resnet_p4, resnet) train in their bundles for one tiny
epoch, and a size their network does not take is refused before the bundle writes anything."""

import pytest
from test_reliability_overrides import BUNDLE_FILES, TINY, copy_bundle, messages, workflow


@pytest.mark.parametrize("bundle, network_name", [
    ("polyp_segmentation", "basicunet_p4"), ("polyp_segmentation", "segresnet_p4"),
    ("histopathology_classification", "resnet_p4"), ("histopathology_classification", "resnet"),
])
def test_one_tiny_epoch_writes_a_checkpoint(tmp_path, bundle, network_name):
    root = copy_bundle(bundle, tmp_path / "bundle")
    flow = workflow(root, ["train.json"], **{**TINY[bundle], "network_name": network_name})
    flow.initialize()
    try:
        flow.run()
    finally:
        flow.finalize()
    assert (root / "models" / "model.pt").is_file()


@pytest.mark.parametrize("bundle, network_name, size, multiple", [
    ("polyp_segmentation", "basicunet_p4", 40, 16), ("polyp_segmentation", "segresnet_p4", 36, 8),
    ("histopathology_classification", "resnet_p4", 36, 8),
])
def test_a_size_the_network_does_not_take_is_refused_before_anything_is_written(tmp_path, bundle, network_name, size,
                                                                                  multiple):
    root = copy_bundle(bundle, tmp_path / "bundle")
    flow = workflow(root, ["train.json"], **{**TINY[bundle], "network_name": network_name, "image_size": size})
    with pytest.raises(Exception) as error:
        flow.initialize()
    assert f"--image_size {size} is not a multiple of {multiple}" in messages(error.value)
    assert {p.name for p in root.iterdir()} == BUNDLE_FILES
