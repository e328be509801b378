"""Flip test: LIP swap indices, mirrored channel swap, and exactness on a flip-equivariant parser."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kd_suite.tasks.parsing import LIP_FLIP_PAIRS, flip_logits, flip_permutation, flip_test_logits

K = 20
LEFT, RIGHT = (14, 16, 18), (15, 17, 19)  # Left-/Right-arm, -leg, -shoe (SCHP right_idx/left_idx)


class MirrorAwareNet(nn.Module):
    """Per-pixel parser that sees the horizontal gradient: mirroring the image mirrors the map AND swaps left/right.

    Unpaired class c: ``a_c·x``; left class: ``a·x + b·d``, its right partner: ``a·x − b·d``, where ``d`` is the
    centred horizontal difference, which changes sign under a mirror. So ``f(mirror x) = swap(mirror f(x))``.
    With ``swap_aware=False`` it is a plain per-pixel linear map (``b = 0``, unrelated left/right weights), so
    ``f(mirror x) = mirror f(x)``: blind to left and right.
    """

    def __init__(self, swap_aware: bool = True) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.a = torch.randn(K, 3, generator=g)
        self.b = torch.zeros(K, 3)
        if swap_aware:
            for left, right in zip(LEFT, RIGHT):
                self.a[right] = self.a[left]
                self.b[left] = torch.randn(3, generator=g)
                self.b[right] = -self.b[left]

    def forward(self, x: Tensor) -> Tensor:
        pad = F.pad(x, (1, 1, 0, 0))
        d = pad[..., 2:] - pad[..., :-2]  # (B, 3, H, W), odd under a horizontal mirror
        return torch.einsum("kc,bchw->bkhw", self.a, x) + torch.einsum("kc,bchw->bkhw", self.b, d)


def test_lip_pairs_and_permutation():
    assert set(LIP_FLIP_PAIRS) == set(zip(LEFT, RIGHT))
    expected = list(range(14)) + [15, 14, 17, 16, 19, 18]  # SCHP evaluate.py flipped_idx on channels 14..19
    assert flip_permutation(K) == expected
    for bad in ([(14, 20)], [(14, 15), (15, 16)], [(3, 3)]):
        with pytest.raises(ValueError, match="flip pairs"):
            flip_permutation(K, bad)


def test_flip_logits_mirrors_and_swaps_each_channel():
    x = torch.randn(2, K, 3, 5)
    y = flip_logits(x)
    partner = {**dict(zip(LEFT, RIGHT)), **dict(zip(RIGHT, LEFT))}
    for c in range(K):
        for col in range(5):
            torch.testing.assert_close(y[:, c, :, col], x[:, partner.get(c, c), :, 4 - col])
    torch.testing.assert_close(flip_logits(y), x)  # an involution


def test_flip_test_is_exact_for_a_flip_equivariant_model():
    net, x = MirrorAwareNet(), torch.randn(2, 3, 6, 7)
    plain = net(x)
    torch.testing.assert_close(net(x.flip(-1)), flip_logits(plain))  # the model really is equivariant
    torch.testing.assert_close(flip_test_logits(net, x), plain)


def test_flip_test_swaps_back_only_the_paired_channels():
    net, x = MirrorAwareNet(swap_aware=False), torch.randn(2, 3, 6, 7)
    plain, tested = net(x), flip_test_logits(net, x)
    unpaired = [c for c in range(K) if c not in LEFT + RIGHT]
    torch.testing.assert_close(tested[:, unpaired], plain[:, unpaired])  # mirror-symmetric channels unchanged
    # a model blind to left/right gets its paired channels averaged: left = (f_left + f_right) / 2
    for left, right in zip(LEFT, RIGHT):
        torch.testing.assert_close(tested[:, left], (plain[:, left] + plain[:, right]) / 2)
