import pytest
import torch


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


GRID_GROUPS_2D = ["p4", "p4m"]
GRID_GROUPS_3D = ["D4", "D4h", "O", "Oh"]
