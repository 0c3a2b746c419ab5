"""Shared test helpers (importable because tests/ is on sys.path under pytest's default import mode)."""

import torch
import torch.nn as nn


def trained_briefly(net: nn.Module, size: tuple[int, ...] = (16, 16), steps: int = 2) -> nn.Module:
    """A few SGD steps on random (2, in_channels, *size) inputs, so batch-norm running statistics and weights
    are not at their initial values; returns the net in eval mode."""
    opt = torch.optim.SGD(net.parameters(), lr=0.01)
    for _ in range(steps):
        opt.zero_grad()
        net(torch.randn((2, net.in_channels) + tuple(size))).square().mean().backward()
        opt.step()
    return net.eval()
