import pytest
import torch
from monai.bundle import ConfigParser
from monai.networks.utils import convert_to_torchscript

from monai_equivariant.groups import get_group
from monai_equivariant.layers import GroupBatchNorm, GroupConv, LiftingConv
from monai_equivariant.networks.nets import GroupUNet, P4MUNet, P4UNet, count_parameters, matched_channels
from monai_equivariant.utils import assert_equivariant, export

from helpers import assert_matches, trained_briefly


SHAPE_CASES = [
    # spatial_dims, group, in, out, channels, batch, size
    (2, "p4", 1, 2, (4, 8), 1, 16),
    (2, "p4", 3, 1, (2, 4, 8), 2, 24),
    (2, "p4m", 2, 3, (2, 3, 4), 2, 16),
    (2, "trivial", 3, 2, (4, 8, 16), 1, 32),
    (3, "O", 1, 2, (1, 2), 2, 8),
    (3, "D4h", 2, 1, (2, 2, 3), 1, 8),
    (3, "trivial", 1, 1, (4, 8), 2, 8),
]


@pytest.mark.parametrize("dims,group,cin,cout,channels,batch,size", SHAPE_CASES)
def test_shapes(dims, group, cin, cout, channels, batch, size):
    net = GroupUNet(dims, cin, cout, channels, group=group)
    x = torch.randn((batch, cin) + (size,) * dims)
    y = net(x)
    assert y.shape == (batch, cout) + (size,) * dims
    y.mean().backward()


def test_published_parameter_budgets():
    p4 = count_parameters(P4UNet(spatial_dims=2, in_channels=3, out_channels=1))
    plain = count_parameters(GroupUNet(2, 3, 1, (16, 32, 64, 128, 256), group="trivial"))
    assert abs(p4 - 1_964_029) / 1_964_029 < 0.01, p4
    assert abs(plain - 1_965_625) / 1_965_625 < 0.01, plain
    p4m = count_parameters(P4MUNet())
    assert abs(p4m - plain) / plain < 0.01, p4m
    assert matched_channels((8, 16, 32, 64, 128), "p4", "trivial") == (16, 32, 64, 128, 256)


@pytest.mark.parametrize("net_factory,sizes", [
    (lambda: P4UNet(2, 3, 1, (4, 8, 8, 16)), [(32, 32), (16, 40)]),
    (lambda: P4MUNet(2, 2, 2, (3, 4, 6)), [(16, 16), (24, 20)]),
    (lambda: GroupUNet(2, 1, 1, (2, 4), group="se2_8"), [(8, 8), (12, 12)]),
])
def test_2d_unets_exactly_equivariant(net_factory, sizes):
    net = trained_briefly(net_factory(), sizes[0])
    group = net.group
    elements = list(range(group.order)) if group.is_grid else [
        e for e in range(group.order) if get_group("p4").matrices.tolist().count(group.matrices[e].tolist())
    ]
    for size in sizes:
        if group.is_grid or size[0] == size[1]:
            errors = assert_equivariant(net, group, torch.randn((2, net.in_channels) + size), elements=elements)
            assert len(errors) == len(elements)


@pytest.mark.parametrize("group", ["O", "D4h"])
def test_3d_unet_exactly_equivariant(group):
    net = GroupUNet(3, 1, 2, (2, 2), group=group).eval()
    for size in [(8, 8, 8), (6, 8, 10)]:
        assert_equivariant(net, group, torch.randn((2, 1) + size))


def test_inadmissible_input_rejected():
    net = P4UNet(2, 3, 1, (2, 2, 2, 2, 2))
    with pytest.raises(ValueError, match="multiple of 16"):
        net(torch.randn(1, 3, 65, 65))
    with pytest.raises(ValueError, match="3 input channels"):
        net(torch.randn(1, 1, 64, 64))
    with pytest.raises(ValueError, match="2 spatial dims"):
        net(torch.randn(1, 3, 64, 64, 64))
    with pytest.raises(ValueError, match="3D"):
        GroupUNet(2, 1, 1, group="O")
    with pytest.raises(ValueError, match="unknown group"):
        GroupUNet(2, 1, 1, group="hexagonal")
    with pytest.raises(ValueError, match="strides"):
        GroupUNet(2, 1, 1, (2, 4), strides=(2, 2))
    with pytest.raises(ValueError, match="norm"):
        GroupUNet(2, 1, 1, (2, 4), norm="layer")


def test_state_dict_keys_identical_in_train_and_eval():
    net = P4UNet(2, 3, 1, (2, 4, 4))
    keys_train = list(net.state_dict())
    net.eval()
    with torch.no_grad():
        net(torch.randn(1, 3, 16, 16))
    assert list(net.state_dict()) == keys_train
    fresh = P4UNet(2, 3, 1, (2, 4, 4)).eval()
    fresh.load_state_dict(net.state_dict(), strict=True)


@pytest.mark.parametrize("dims,group", [(2, "p4"), (2, "p4m"), (3, "O")])
def test_export_equals_and_scripts(dims, group, tmp_path):
    net = GroupUNet(dims, 2, 1, (2, 3), group=group)
    net(torch.randn((2, 2) + (8,) * dims))  # update BN stats
    net.eval()
    x = torch.randn((1, 2) + (8,) * dims)
    plain = export(net)
    assert not any(isinstance(m, (GroupConv, LiftingConv, GroupBatchNorm)) for m in plain.modules())
    with torch.no_grad():
        assert_matches(plain(x), net(x), net)
        scripted = torch.jit.script(plain)
        assert_matches(scripted(x), net(x), net)
    ts = convert_to_torchscript(plain, filename_or_obj=str(tmp_path / "net.ts"), verify=True, inputs=[x])
    loaded = torch.jit.load(str(tmp_path / "net.ts"))
    with torch.no_grad():
        assert_matches(loaded(x), net(x), net)
    assert ts is not None


def test_bundle_config_instantiates():
    parser = ConfigParser({
        "imports": ["$import monai_equivariant"],
        "network_def": {
            "_target_": "monai_equivariant.networks.nets.P4UNet",
            "spatial_dims": 2, "in_channels": 3, "out_channels": 1, "channels": [2, 4, 8],
        },
    })
    net = parser.get_parsed_content("network_def")
    assert isinstance(net, P4UNet)
    assert net(torch.randn(1, 3, 16, 16)).shape == (1, 1, 16, 16)
