import pytest
import torch
from monai.networks.layers import GaussianFilter

from monai_equivariant.groups import get_group
from monai_equivariant.layers import GroupConv, LiftingConv
from monai_equivariant.networks.nets import SE2CNN, GroupUNet, P4UNet, SE2UNet, matched_channels
from monai_equivariant.utils import assert_equivariant, disk_mask, export, rotation_error_curve

from helpers import assert_matches, trained_briefly

ROTATIONS = [4, 8, 12, 16]


def quarter_turns(n):
    """Indices of the rotations by 0°, 90°, 180°, 270° in se2_n (4 divides n)."""
    return [k * n // 4 for k in range(4)]


def smooth_disk(batch, channels, size, radius, sigma=3.0):
    x = GaussianFilter(spatial_dims=2, sigma=sigma)(torch.randn(batch, channels, size, size))
    return x / x.std() * disk_mask(size, radius)


@pytest.mark.parametrize("n", ROTATIONS)
def test_se2_unet_exactly_equivariant_at_quarter_turns(n):
    net = trained_briefly(SE2UNet(2, 2, 3, channels=(2, 3), num_rotations=n), (8, 8))
    assert net.group.name == f"se2_{n}"
    for size in [(8, 8), (12, 16)]:
        errors = assert_equivariant(net, net.group, torch.randn((2, 2) + size), elements=quarter_turns(n))
        assert len(errors) == 4


@pytest.mark.parametrize("n", ROTATIONS)
def test_se2_cnn_logits_exactly_invariant_at_quarter_turns(n):
    net = trained_briefly(SE2CNN(2, 2, 3, num_rotations=n, channels=(2, 3)), (8, 8))
    for size in [(8, 8), (10, 14)]:
        x = torch.randn((2, 2) + size)
        assert net(x).shape == (2, 3)
        assert_equivariant(net, net.group, x, "plain", "invariant", elements=quarter_turns(n))


def test_se2_4_networks_agree_with_p4():
    p4, se2 = P4UNet(2, 2, 1, (2, 3)).eval(), SE2UNet(2, 2, 1, (2, 3), num_rotations=4).eval()
    se2.load_state_dict(p4.state_dict(), strict=True)
    x = torch.randn(2, 2, 8, 8)
    with torch.no_grad():
        assert_matches(se2(x), p4(x), p4)
    for cls in (LiftingConv, GroupConv):
        a, b = cls(2, 3, "p4", 5), cls(2, 3, "se2_4", 5)
        b.load_state_dict(a.state_dict())
        assert b.kernel_mask() is None
        x = torch.randn(1, 2 * (4 if cls is GroupConv else 1), 9, 9)
        assert_matches(b(x), a(x), a)


@pytest.mark.parametrize("k,taps", [(3, 5), (5, 13)])
def test_disk_mask_is_group_data_and_zeroes_every_rotated_copy(k, taps):
    action = get_group("se2_8").kernel_action(k)
    assert action.mask is not None and int(action.mask.sum()) == taps
    mask = action.mask.reshape(k, k)
    assert torch.equal(mask, torch.rot90(mask, 1)) and torch.equal(mask, mask.flip(0))
    assert get_group("p4").kernel_action(k).mask is None and get_group("se2_8").kernel_action(1).mask is None
    for cls in (LiftingConv, GroupConv):
        conv = cls(2, 3, "se2_8", k)
        bank, _ = conv.expanded()
        assert bank.shape == (3 * 8, 2 * (8 if cls is GroupConv else 1), k, k)
        assert torch.all(bank[..., mask == 0] == 0) and torch.any(bank[..., mask == 1] != 0)
        bank.sum().backward()
        grad = conv.weight.grad.reshape(*conv.weight.shape[:3], k * k)
        assert torch.all(grad[..., action.mask == 0] == 0)  # masked taps are not trained


def test_se2_unet_default_parameter_budget():
    n_params = sum(p.numel() for p in SE2UNet().parameters())
    plain = sum(p.numel() for p in GroupUNet(2, 3, 1, (16, 32, 64, 128, 256), group="trivial").parameters())
    assert n_params == 1_955_673 and abs(n_params - plain) / plain < 0.01
    assert SE2UNet().channels == matched_channels((16, 32, 64, 128, 256), "trivial", "se2_12")


@pytest.mark.parametrize("factory", [
    lambda: SE2UNet(2, 2, 1, (2, 3), num_rotations=8),
    lambda: SE2CNN(2, 2, 3, num_rotations=12, channels=(2, 3)),
])
def test_export_equals_and_scripts(factory):
    net = trained_briefly(factory(), (8, 8))
    plain = export(net)
    assert not any(isinstance(m, (GroupConv, LiftingConv)) for m in plain.modules())
    x = torch.randn(2, 2, 8, 8)
    scripted = torch.jit.script(plain)
    with torch.no_grad():
        assert_matches(plain(x), net(x), net)
        assert_matches(scripted(x), net(x), net)


def test_rotation_error_curve_exact_at_quarter_turns_and_below_plain_net_between():
    torch.manual_seed(0)
    se2 = trained_briefly(SE2UNet(2, 1, 1, (3, 4), num_rotations=8), (16, 16))
    plain = trained_briefly(GroupUNet(2, 1, 1, matched_channels((3, 4), "se2_8", "trivial"), group="trivial"), (16, 16))
    x = smooth_disk(2, 1, 32, radius=12)
    se2_curve = rotation_error_curve(se2, x, [0, 45, 90, 180], radius=12)
    plain_curve = rotation_error_curve(plain, x, [0, 45, 90, 180], radius=12)
    assert se2_curve.shape == (4,) and se2_curve.dtype == torch.float64
    assert se2_curve[[0, 2, 3]].max() < 1e-5 and plain_curve[0] < 1e-6
    assert 0 < se2_curve[1] < 0.5 * plain_curve[1]
    # the identity commutes with every rotation, inside the disk
    assert rotation_error_curve(torch.nn.Identity(), x, [10, 33, 45]).max() < 1e-6
    classifier = trained_briefly(SE2CNN(2, 1, 2, num_rotations=4, channels=(2, 2)), (8, 8))
    assert rotation_error_curve(classifier, x, [90, 270], out_type="invariant").max() < 1e-5


def test_bad_inputs_give_clear_errors():
    for bad in (0, -4, 2.5, "8", True, None):
        with pytest.raises(ValueError, match="num_rotations must be an integer"):
            SE2UNet(num_rotations=bad)
        with pytest.raises(ValueError, match="num_rotations must be an integer"):
            SE2CNN(num_rotations=bad)
    with pytest.raises(ValueError, match="2D"):
        SE2UNet(spatial_dims=3)
    with pytest.raises(ValueError, match="2D"):
        SE2CNN(spatial_dims=3)
    with pytest.raises(TypeError, match="group"):  # the group follows from num_rotations
        SE2UNet(group="p4")
    with pytest.raises(ValueError, match="channels"):
        SE2CNN(channels=())
    with pytest.raises(ValueError, match="channels"):
        SE2UNet(channels=(4,))
    cnn = SE2CNN(2, 3, 2, num_rotations=8, channels=(2, 2, 2))
    with pytest.raises(ValueError, match="multiple of 4"):
        cnn(torch.randn(1, 3, 18, 16))
    with pytest.raises(ValueError, match="3 input channels"):
        cnn(torch.randn(1, 1, 16, 16))
    with pytest.raises(ValueError, match="2 spatial dims"):
        cnn(torch.randn(1, 3, 16, 16, 16))
    unet = SE2UNet(2, 3, 1, (2, 2, 2), num_rotations=8)
    with pytest.raises(ValueError, match="multiple of 4"):
        unet(torch.randn(1, 3, 16, 10))
    with pytest.raises(ValueError, match="3 input channels"):
        unet(torch.randn(1, 2, 16, 16))
    with pytest.raises(ValueError, match="square"):
        rotation_error_curve(unet, torch.randn(1, 3, 16, 12), [45])
    with pytest.raises(ValueError, match="out_type"):
        rotation_error_curve(unet, torch.randn(1, 3, 16, 16), [45], out_type="regular")


def test_bundle_config_instantiates_se2_nets():
    from monai.bundle import ConfigParser

    parser = ConfigParser({
        "imports": ["$import monai_equivariant"],
        "net": {"_target_": "monai_equivariant.networks.nets.SE2CNN", "in_channels": 3, "out_channels": 2,
                "num_rotations": 12, "channels": [2, 2]},
        "unet": {"_target_": "monai_equivariant.networks.nets.SE2UNet", "in_channels": 1, "out_channels": 2,
                 "channels": [2, 2], "num_rotations": 6},
    })
    assert parser.get_parsed_content("net")(torch.randn(1, 3, 8, 8)).shape == (1, 2)
    assert parser.get_parsed_content("unet")(torch.randn(1, 1, 8, 8)).shape == (1, 2, 8, 8)
