"""Solutions to the exercises of notebook 04 (checked by tests/test_exercises.py)."""
import torch


def my_path_se(y, w1, b1, w2, b2):
    """SE per scan path: y (b, K, d, l) -> (b, K, d, l); path k squeezed, excited and rescaled with its own weights.

    w1 (K, hidden, d), b1 (K, hidden), w2 (K, d, hidden), b2 (K, d).
    """
    out = []
    for k in range(y.shape[1]):
        z = y[:, k].mean(dim=-1)  # (b, d)       squeeze: mean over the l positions of path k
        hidden = torch.relu(z @ w1[k].T + b1[k])  # (b, hidden)  FC d -> d/r, ReLU
        s = torch.sigmoid(hidden @ w2[k].T + b2[k])  # (b, d)       FC d/r -> d, sigmoid: the gate
        out.append(y[:, k] * s[..., None])  # (b, d, l)    rescale every position of path k
    return torch.stack(out, dim=1)  # (b, K, d, l)


def se_params(channels, directions, reduction):
    """Parameters of PathSqueezeExcite: K independent two-layer bottlenecks with biases."""
    hidden = max(channels // reduction, 4)
    return directions * (hidden * channels + hidden + channels * hidden + channels)
