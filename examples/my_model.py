"""A user's own model, as docs/models.md shows it: `inspectlab tree examples/my_model.py:small_cnn`."""

from torch import nn


def small_cnn(width: int = 16, classes: int = 10) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, classes),
    )
