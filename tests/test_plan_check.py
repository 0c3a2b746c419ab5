"""One plan check (groups.check_plan) for every net: per-axis kernels and strides pick the group."""

import pytest
import torch
from helpers import assert_matches, trained_briefly

from monai_equivariant.groups import check_plan, get_group
from monai_equivariant.networks.nets import GroupCNN, GroupDynUNet, GroupUNet, P4UNet


def test_check_plan_names_the_argument_the_level_the_element_and_the_group_that_fits():
    with pytest.raises(ValueError, match=r"group 'O' does not preserve level 1 of the plan: strides\[1\] = \(1, 2, 2\) "
                                         r"\(between levels 1 and 2\).*element \d+ = \[\[.*largest group that fits "
                                         r"this plan is 'D4h'$"):
        check_plan(get_group("O"), {"kernel_size": [3], "strides": [2, [1, 2, 2]]}, between_levels=("strides",))
    with pytest.raises(ValueError, match=r"kernel_size\[0\] = \(3, 1\).*'trivial' \(the 4 axis flips"):
        check_plan(get_group("p4"), {"kernel_size": [[3, 1]]})
    check_plan(get_group("D4h"), {"kernel_size": [[1, 3, 3], 3], "strides": [[1, 2, 2], 2]})  # fits: no error
    check_plan(get_group("se2_8"), {"kernel_size": [5], "strides": [2]})  # isotropic plans fit every group


@pytest.mark.parametrize("make", [
    lambda: GroupUNet(3, 1, 1, (1, 2), group="O", kernel_size=(1, 3, 3)),
    lambda: GroupCNN(3, 1, 2, (1, 2), group="O", strides=((1, 2, 2),)),
    lambda: GroupDynUNet(3, 1, 1, [[1, 3, 3], 3, 3], [1, 2, 2], [2, 2], group="O"),
])
def test_every_net_refuses_through_the_one_check(make):
    with pytest.raises(ValueError, match=r"group 'O' does not preserve level .* largest group that fits this plan "
                                         r"is 'D4h'"):
        make()


def test_group_unet_takes_per_axis_kernel_sizes_exact_under_d4h():
    torch.manual_seed(0)
    net = trained_briefly(GroupUNet(3, 1, 2, (1, 2), group="D4h", strides=((1, 2, 2),), kernel_size=(1, 3, 3),
                                    up_kernel_size=[1, 3, 3]), (3, 4, 4))
    assert net.kernel_size == (1, 3, 3) and net.up_kernel_size == (1, 3, 3)
    group = net.group
    with torch.no_grad():
        for size in ((3, 4, 4), (2, 6, 6)):
            x = torch.randn(1, 1, *size)
            y = net(x)
            for g in range(group.order):
                assert_matches(net(group.transform(x, g)), group.transform(y, g), net, msg=f"element {g}")


def test_group_unet_kernels_still_need_odd_sides():
    with pytest.raises(ValueError, match="kernel_size must be an odd int"):
        P4UNet(2, 1, 1, (2, 2), kernel_size=(3, 2))
    with pytest.raises(ValueError, match="up_kernel_size must be an odd int"):
        P4UNet(2, 1, 1, (2, 2), up_kernel_size=4)
