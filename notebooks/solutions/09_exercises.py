"""Solutions to the exercises of notebook 09 (checked by tests/test_exercises.py)."""
import torch


def fold_bn(weight, bias, bn):
    """W' = W * s per output channel, b' = beta + (b - mu) * s, with s = gamma / sqrt(var + eps)."""
    scale = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)  # (out,)
    b = bias if bias is not None else torch.zeros_like(bn.running_mean)
    return weight * scale[:, None, None, None], bn.bias.detach() + (b - bn.running_mean) * scale


def conv_macs(c_in, c_out, k, h_out, w_out, groups=1):
    """Each output value needs (c_in / groups) * k * k multiply-accumulates."""
    return h_out * w_out * c_out * (c_in // groups) * k * k
