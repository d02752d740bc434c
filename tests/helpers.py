"""Small helpers shared by several test modules."""

from torch import nn


def randomise_bn_statistics(model: nn.Module, mean_range: float) -> None:
    """Give every BatchNorm non-trivial running statistics (mean in ±mean_range, variance in [0.5, 1.5]),
    so that exactness checks in eval mode do not pass only because BN is the identity."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-mean_range, mean_range)
            m.running_var.uniform_(0.5, 1.5)
