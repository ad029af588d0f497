"""Solutions to the exercises of notebook 04 (checked by tests/test_exercises.py)."""
import torch


def se_params(channels, directions, reduction):
    """Parameters of PathSqueezeExcite: K independent two-layer bottlenecks with biases."""
    hidden = max(channels // reduction, 4)
    return directions * (hidden * channels + hidden + channels * hidden + channels)


def se_gate(y, w1, b1, w2, b2):
    """The SE gate of one direction: y (b, d, h, w), w1 (hidden, d), w2 (d, hidden) -> (b, d)."""
    squeeze = y.mean(dim=(-2, -1))  # (b, d)
    hidden = torch.relu(squeeze @ w1.T + b1)  # (b, hidden)
    return torch.sigmoid(hidden @ w2.T + b2)  # (b, d)
