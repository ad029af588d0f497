import pytest
import torch

from msvssm.ops import cross_merge, cross_scan, cross_unscan


@pytest.mark.parametrize("h,w", [(1, 1), (2, 3), (5, 4), (7, 11)])
def test_merge_is_adjoint_of_scan(h, w):
    torch.manual_seed(0)
    x = torch.randn(2, 3, h, w, dtype=torch.float64)
    y = torch.randn(2, 4, 3, h * w, dtype=torch.float64)
    lhs = (cross_scan(x) * y).sum()
    rhs = (x * cross_merge(y, h, w)).sum()
    torch.testing.assert_close(lhs, rhs)


def test_scan_orders_on_a_labelled_grid():
    # pixel (i, j) of a 2x3 grid holds 10*i + j
    grid = torch.tensor([[0.0, 1, 2], [10, 11, 12]]).reshape(1, 1, 2, 3)
    seqs = cross_scan(grid)[0, :, 0]  # (4, 6)
    assert seqs[0].tolist() == [0, 1, 2, 10, 11, 12]  # row-major
    assert seqs[1].tolist() == [0, 10, 1, 11, 2, 12]  # column-major
    assert seqs[2].tolist() == [12, 11, 10, 2, 1, 0]  # reversed row-major
    assert seqs[3].tolist() == [12, 2, 11, 1, 10, 0]  # reversed column-major


def test_unscan_puts_every_direction_back_on_the_grid():
    x = torch.randn(2, 5, 3, 7)
    back = cross_unscan(cross_scan(x), 3, 7)  # (b, 4, c, h, w)
    for k in range(4):
        torch.testing.assert_close(back[:, k], x)
    torch.testing.assert_close(cross_merge(cross_scan(x), 3, 7), 4 * x)


def test_unscan_rejects_wrong_length():
    with pytest.raises(ValueError, match="expected"):
        cross_unscan(torch.zeros(1, 4, 2, 10), 3, 3)
