"""LeNet-5 (LeCun et al., "Gradient-Based Learning Applied to Document Recognition", Proc. IEEE 1998)."""

from __future__ import annotations

from collections import OrderedDict

from torch import nn


def lenet5(num_classes: int = 10) -> nn.Module:
    """LeNet-5 for 1x32x32 inputs (LeCun et al., Proc. IEEE 1998).

    The common modern reading of the paper: C1 conv 6@5x5, S2 2x2 average pool, C3 conv 16@5x5 (fully
    connected to S2, not the paper's sparse table), S4 2x2 average pool, then fully connected 120, 84 and
    ``num_classes``, with tanh between layers. Returns logits of shape (N, num_classes).
    """
    return nn.Sequential(OrderedDict([
        ("conv1", nn.Conv2d(1, 6, 5)),
        ("act1", nn.Tanh()),
        ("pool1", nn.AvgPool2d(2)),
        ("conv2", nn.Conv2d(6, 16, 5)),
        ("act2", nn.Tanh()),
        ("pool2", nn.AvgPool2d(2)),
        ("flatten", nn.Flatten()),
        ("fc1", nn.Linear(16 * 5 * 5, 120)),
        ("act3", nn.Tanh()),
        ("fc2", nn.Linear(120, 84)),
        ("act4", nn.Tanh()),
        ("fc3", nn.Linear(84, num_classes)),
    ]))
