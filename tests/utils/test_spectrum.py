"""The label-free gauges on embeddings whose answer is known."""

import torch

from ssl_pretrain.utils.spectrum import normalised_std, rankme


def test_rankme_counts_the_directions_in_use():
    torch.manual_seed(0)
    spread = torch.randn(4096, 64)
    assert 60 < rankme(spread) <= 64
    three = torch.randn(4096, 3) @ torch.randn(3, 64)  # rank 3
    assert 2 < rankme(three) <= 3.01
    collapsed = torch.randn(4096, 1) * torch.ones(1, 64)  # one direction
    assert rankme(collapsed) < 1.01


def test_normalised_std_is_one_when_spread_and_zero_when_collapsed():
    torch.manual_seed(0)
    assert abs(normalised_std(torch.randn(4096, 64)) - 1) < 0.02
    assert normalised_std(torch.ones(100, 64) + 1e-6 * torch.randn(100, 64)) < 1e-4
