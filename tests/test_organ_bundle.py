"""The 3D organ segmentation bundle (bundles/organ_segmentation) beyond the checks every bundle shares
(tests/test_bundles.py): the ``python -m monai.bundle run`` command line end to end on its synthetic default, the
orientation and spacing of the NIfTI volumes it reads, the network's admissible crop sizes, and the D4h plan the
default network is built with."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser, verify_net_in_out
from helpers import roundoff_bound
from test_bundles import BUNDLES, ORGAN_TINY, _cli_overrides, _env, copy_bundle

from monai_equivariant.bundle.overrides import check_roi_size, rotation_subgroup
from monai_equivariant.data import decathlon_datalist, write_synthetic_organ_dataset
from monai_equivariant.networks.registry import network_names

CONFIGS = BUNDLES / "organ_segmentation" / "configs"


def _parser(config: str = "train.json", **overrides) -> ConfigParser:
    parser = ConfigParser()
    parser.read_config(str(CONFIGS / config))
    parser.update(overrides)
    return parser


def _cli(root: Path, configs: str, *extra: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "monai.bundle", "run", "--config_file", configs,
               "--meta_file", str(root / "configs" / "metadata.json"),
               "--logging_file", str(root / "configs" / "logging.conf"), "--bundle_root", str(root),
               *_cli_overrides(dict(ORGAN_TINY, epochs=1)), *extra]
    done = subprocess.run(command, cwd=root, env=_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def test_monai_bundle_run_trains_evaluates_and_infers_on_the_synthetic_volumes(tmp_path):
    root = copy_bundle("organ_segmentation", tmp_path / "bundle")
    configs = root / "configs"
    _cli(root, str(configs / "train.json"))
    assert (root / "models" / "model.pt").is_file() and (root / "data" / "synthetic_organs" / "dataset.json").is_file()
    evaluated = _cli(root, f"['{configs / 'train.json'}','{configs / 'evaluate.json'}']")
    metrics = dict(line.split(",") for line in (root / "eval" / "metrics.csv").read_text().splitlines())
    assert {"val_mean_dice", "val_mean_iou", "equivariance_dice"} <= set(metrics)
    per_organ = (root / "eval" / "val_mean_dice_raw.csv").read_text().splitlines()
    assert per_organ[0] == "filename,class0,class1,class2,mean"  # left, right, central organ
    assert "for the 8 elements of D4" in evaluated.stdout
    _cli(root, str(configs / "inference.json"))
    predictions = sorted((root / "predictions").glob("*_seg.nii.gz"))
    test_images = [Path(i["image"]) for i in decathlon_datalist(root / "data" / "synthetic_organs")]
    assert len(predictions) == 1
    source = nib.load(str(next(p for p in test_images if predictions[0].name.startswith(p.name[:-7]))))
    mask = nib.load(str(predictions[0]))
    # back in the input's own grid: shape (x, y, z) and affine, labels 0..3
    assert mask.shape == source.shape == (24, 24, 12) and np.allclose(mask.affine, source.affine)
    assert set(np.unique(np.asarray(mask.dataobj))) <= {0, 1, 2, 3}


def _write_lps(path: Path, volume_zyx: np.ndarray, spacing_zyx) -> None:
    """The (z, y, x) RAS volume stored as many scanners do: array axes flipped along x and y, LPS affine."""
    data = volume_zyx.transpose(2, 1, 0)[::-1, ::-1, :]
    nx, ny = data.shape[:2]
    sz, sy, sx = spacing_zyx
    affine = np.array([[-sx, 0, 0, (nx - 1) * sx], [0, -sy, 0, (ny - 1) * sy], [0, 0, sz, 0], [0, 0, 0, 1.0]])
    nib.save(nib.Nifti1Image(np.ascontiguousarray(data), affine), str(path))


def test_volumes_reach_the_network_as_z_y_x_with_the_left_organ_at_low_x_whatever_the_stored_orientation(tmp_path):
    root = write_synthetic_organ_dataset(tmp_path / "organs", num_samples=1, shape=(8, 20, 24))
    item = decathlon_datalist(root)[0]
    transform = _parser(roi_size=[8, 16, 16]).get_parsed_content("validate#preprocessing")
    ras = transform(dict(item))
    image, label = ras["image"], ras["label"]
    assert image.shape == label.shape == (1, 8, 20, 24)  # (C, z, y, x): z, the 2.5 mm axis, first
    x_of = {k: torch.nonzero(label[0] == k)[:, 2].float().mean() for k in (1, 2)}
    assert x_of[1] < 11.5 < x_of[2]  # the patient's left organ at low x, the right one at high x
    stored = {key: nib.load(item[key]) for key in ("image", "label")}
    for key, volume in stored.items():
        _write_lps(tmp_path / f"{key}_lps.nii.gz", np.asarray(volume.dataobj).transpose(2, 1, 0), (2.5, 1.0, 1.0))
    lps = transform({key: str(tmp_path / f"{key}_lps.nii.gz") for key in ("image", "label")})
    assert torch.equal(lps["label"], label) and torch.allclose(lps["image"], image)


def test_pixdim_resamples_to_the_given_spacing_and_null_keeps_the_data_spacing(tmp_path):
    root = write_synthetic_organ_dataset(tmp_path / "organs", num_samples=1, shape=(8, 20, 24))
    item = decathlon_datalist(root)[0]
    kept = _parser(roi_size=[8, 16, 16]).get_parsed_content("validate#preprocessing")(dict(item))
    coarse = _parser(roi_size=[8, 8, 8], pixdim=[2.5, 2.0, 2.0]).get_parsed_content("validate#preprocessing")(
        dict(item))
    word = _parser(roi_size=[8, 16, 16], pixdim="null").get_parsed_content("validate#preprocessing")(dict(item))
    assert kept["image"].shape == word["image"].shape == (1, 8, 20, 24) and coarse["image"].shape == (1, 8, 10, 12)
    assert set(torch.unique(coarse["label"]).tolist()) <= {0.0, 1.0, 2.0, 3.0}  # nearest for labels


def test_intensity_range_is_a_fixed_clipped_window_and_null_scales_each_volume(tmp_path):
    root = write_synthetic_organ_dataset(tmp_path / "organs", num_samples=1, shape=(8, 16, 16))
    item = decathlon_datalist(root)[0]
    raw = torch.as_tensor(np.asarray(nib.load(item["image"]).dataobj)).permute(2, 1, 0)  # (z, y, x)
    own = _parser(roi_size=[8, 16, 16]).get_parsed_content("validate#preprocessing")(dict(item))["image"][0]
    window = _parser(roi_size=[8, 16, 16], intensity_range=[0.0, 0.5]).get_parsed_content(
        "validate#preprocessing")(dict(item))["image"][0]
    assert torch.allclose(own, (raw - raw.min()) / (raw.max() - raw.min()), atol=1e-6)
    assert torch.allclose(window, (raw / 0.5).clamp(0, 1), atol=1e-6)


def test_default_config_builds_the_d4h_dynunet_with_the_anisotropic_plan():
    parser = _parser()
    assert parser["network_name"] == "dynunet_d4h" and parser["roi_size"] == [17, 49, 49]
    definition = parser.get("network_def")
    assert definition["kernel_size"] == "@kernel_size" and definition["strides"] == "@strides"
    assert parser.get_parsed_content("kernel_size") == [[1, 3, 3], [1, 3, 3], [3, 3, 3]]
    assert parser.get_parsed_content("upsample_kernel_size") == [[1, 2, 2], [2, 2, 2]]
    # odd sides n with (n - 1) divisible by the strides' product (2, 4, 4): stride-2 3x3 convs stay exact
    assert [(n - 1) % p for n, p in zip(parser["roi_size"], (2, 4, 4))] == [0, 0, 0]
    if "dynunet_d4h" in network_names("segmentation", 3):
        net = parser.get_parsed_content("network_def")
        assert check_roi_size(net, parser["roi_size"]) == [17, 49, 49]
    else:  # the twin is not registered in this checkout: refused by name, offering what is
        with pytest.raises(ValueError, match=r"--network_name must be one of \['dynunet'\] for this bundle"):
            from monai_equivariant.bundle import check_overrides

            check_overrides({"network_name": "dynunet_d4h"}, "organ_segmentation")


def test_monai_dynunet_is_parameter_matched_to_d4h_fields():
    net = _parser(network_name="dynunet").get_parsed_content("network_def")
    assert type(net).__module__.startswith("monai.networks.nets") and type(net).__name__ == "DynUNet"
    assert list(net.filters) == [16, 32, 64]  # D4h fields [4, 8, 16] x sqrt(16): the twin's parameter count


def test_verify_net_in_out_of_monai_dynunet_at_its_own_sizes(tmp_path):
    """metadata.json states the D4h net's sizes (2n+1, 4n+1, 4n+1); MONAI's DynUNet takes multiples (2n, 4n, 4n)."""
    import json

    meta = json.loads((CONFIGS / "metadata.json").read_text())
    for part in ("inputs", "outputs"):
        key = "image" if part == "inputs" else "pred"
        meta["network_data_format"][part][key]["spatial_shape"] = ["2*n", "4*n", "4*n"]
    (tmp_path / "metadata.json").write_text(json.dumps(meta))
    verify_net_in_out(net_id="network_def", meta_file=str(tmp_path / "metadata.json"),
                      config_file=str(CONFIGS / "inference.json"), device="cpu", network_name="dynunet", n=2)


def test_check_roi_size_asks_the_networks_own_check_or_runs_one_forward():
    from monai_equivariant.networks.nets import GroupUNet

    net = GroupUNet(spatial_dims=3, in_channels=1, out_channels=2, channels=(2, 4), group="D4h")
    assert check_roi_size(net, [4, 6, 8]) == [4, 6, 8]  # its own check_input, on a meta tensor
    with pytest.raises(ValueError, match=r"--roi_size \[5, 6, 8\]: .*multiple of 2"):
        check_roi_size(net, [5, 6, 8])
    conv = torch.nn.Conv3d(1, 2, 3)  # no check of its own: one forward pass of zeros
    assert check_roi_size(conv, [3, 3, 3]) == [3, 3, 3]
    with pytest.raises(ValueError, match=r"--roi_size \[2, 3, 3\]: the network does not take this size"):
        check_roi_size(conv, [2, 3, 3])


def test_rotation_subgroups_keep_left_and_right():
    assert [rotation_subgroup(g) for g in ("D4h", "Oh", "p4m", "D4", "O", "p4")] == ["D4", "O", "p4", "D4", "O", "p4"]


def test_postprocessing_and_metrics_score_a_perfect_prediction_one_and_a_left_right_swap_low():
    from monai.handlers import from_engine
    from monai.metrics import DiceMetric

    parser = _parser(network_name="dynunet")
    post = parser.get_parsed_content("validate#postprocessing")
    label = torch.zeros(1, 4, 8, 8)
    label[0, :, 1:3, 1:3], label[0, :, 5:7, 5:7], label[0, :, 3:5, 3:5] = 1, 2, 3
    perfect = torch.nn.functional.one_hot(label[0].long(), 4).permute(3, 0, 1, 2).float() * 10
    swapped = perfect[[0, 2, 1, 3]]  # the left and right channels exchanged
    for logits, expected in ((perfect, [1.0, 1.0, 1.0]), (swapped, [0.0, 0.0, 1.0])):
        item = post({"pred": logits, "label": label})
        assert item["pred"].shape == item["label"].shape == (4, 4, 8, 8)
        dice = DiceMetric(include_background=False)(*[torch.stack(v) for v in from_engine(["pred", "label"])([item])])
        assert dice[0].tolist() == expected  # per organ: left, right, central


def test_torchrun_two_processes_gloo_trains_with_the_multi_gpu_config(tmp_path):
    root = copy_bundle("organ_segmentation", tmp_path / "bundle")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               "-m", "monai.bundle", "run", "--config_file", "['configs/train.json','configs/multi_gpu_train.json']",
               "--bundle_root", str(root), *_cli_overrides(dict(ORGAN_TINY, epochs=1, synthetic_samples=14))]
    # 14 volumes: 2 validation volumes, one per process (MONAI's DistributedSampler needs one per rank)
    done = subprocess.run(command, cwd=root, env=_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    weights = torch.load(root / "models" / "model.pt", weights_only=True)
    assert weights and not any(key.startswith("module.") for key in weights)  # the DDP wrapper is not saved
    assert len(decathlon_datalist(root / "data" / "synthetic_organs")) == 14  # written once, by rank 0


def test_the_default_d4h_dynunet_trains_and_evaluates_through_monai_bundle_run(tmp_path):
    """The bundle's default network (the D4h GroupDynUNet, on odd crops 1 + m·(2, 4, 4)) through the command line:
    one tiny epoch of training, then the evaluation with its equivariance check over D4."""
    root = copy_bundle("organ_segmentation", tmp_path / "bundle")
    configs = root / "configs"
    overrides = dict(ORGAN_TINY, network_name="dynunet_d4h", roi_size=[9, 17, 17], network_channels=[1, 2, 2],
                     epochs=1)

    def run(config_files: str) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "monai.bundle", "run", "--config_file", config_files,
                   "--meta_file", str(configs / "metadata.json"), "--logging_file", str(configs / "logging.conf"),
                   "--bundle_root", str(root), *_cli_overrides(overrides)]
        done = subprocess.run(command, cwd=root, env=_env(), capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        return done

    run(str(configs / "train.json"))
    assert (root / "models" / "model.pt").is_file()
    evaluated = run(f"['{configs / 'train.json'}','{configs / 'evaluate.json'}']")
    assert "for the 8 elements of D4" in evaluated.stdout
    metrics = dict(line.split(",") for line in (root / "eval" / "metrics.csv").read_text().splitlines())
    assert {"val_mean_dice", "equivariance_dice"} <= set(metrics)
    # exact on D4's rotations: the masks agree and the probabilities (in [0, 1]) differ by float32 round-off only
    assert float(metrics["equivariance_dice"]) == 1.0 and float(metrics["equivariance_mad"]) < 1e-5


# ---------------------------------------------------------------- lateral labels: reflections swap left and right


PAIRS = [("./imagesTr/a.nii.gz", "./labelsTr/a.nii.gz")]  # dataset.json needs a training list; no file is read


def test_label_permutation_of_the_synthetic_set_and_of_an_msd_task(tmp_path):
    from monai_equivariant.data import organ_label_permutation
    from monai_equivariant.data.decathlon import write_decathlon_json

    assert organ_label_permutation("") == [0, 2, 1, 3]
    (tmp_path / "kidneys").mkdir()
    (tmp_path / "spleen").mkdir()
    write_decathlon_json(tmp_path / "kidneys", "kidneys", {0: "background", 1: "Right Kidney", 2: "spleen",
                                                           3: "Left Kidney"}, "CT", PAIRS)
    assert organ_label_permutation(tmp_path / "kidneys") == [0, 3, 2, 1]
    write_decathlon_json(tmp_path / "spleen", "spleen", {0: "background", 1: "spleen"}, "CT", PAIRS)
    assert organ_label_permutation(tmp_path / "spleen") is None  # nothing lateral: no permutation


def test_the_default_d4h_net_has_the_lateral_head_and_swaps_left_and_right_under_reflections():
    from monai_equivariant.groups import as_group
    from monai_equivariant.layers.lateral_head import reflections

    parser = _parser(network_channels=[2, 4, 8])
    net = parser.get_parsed_content("network_def").eval()
    assert net.label_permutation == [0, 2, 1, 3]
    group = as_group("D4h", 3)
    for shape in ((5, 9, 9), (9, 17, 17)):  # two admissible sizes 1 + m·(2, 4, 4)
        x = torch.randn(1, 1, *shape)
        with torch.no_grad():
            y = net(x)
            for g in range(group.order):
                moved = net(group.spatial_transform(x, g))
                expected = group.spatial_transform(y, g)
                if reflections(group)[g]:
                    expected = expected[:, [0, 2, 1, 3]]
                torch.testing.assert_close(moved, expected, rtol=0,
                                           atol=roundoff_bound(net) * float(y.abs().max()))
    plain = _parser(network_name="dynunet", network_channels=[2, 4, 8]).get_parsed_content("network_def")
    assert not hasattr(plain, "label_permutation")  # MONAI's DynUNet: no group, left and right are its own


def test_reflection_groups_are_taken_for_augmentation_and_ensemble_with_the_swap():
    from monai_equivariant.bundle.overrides import check_overrides

    for group in ("D4h", "Oh"):
        check_overrides({"augmentation_group": group, "ensemble_group": group}, "organ_segmentation")
    parser = _parser(augmentation="group", augmentation_group="D4h", inferer="group_ensemble", ensemble_group="D4h",
                     network_channels=[2, 4, 8])
    augment = parser.get_parsed_content("train#random_transforms")[-1]
    assert augment.label_permutation == (0, 2, 1, 3) and tuple(augment.label_keys) == ("label",)
    assert list(parser.get_parsed_content("validate#inferer").label_permutation) == [0, 2, 1, 3]
    rotations = _parser(augmentation="group", inferer="group_ensemble", network_channels=[2, 4, 8])  # D4 defaults
    assert getattr(rotations.get_parsed_content("train#random_transforms")[-1], "label_permutation", None) is None
    assert rotations.get_parsed_content("validate#inferer").label_permutation is None
