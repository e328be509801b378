"""FitNetLoss, ATLoss, PKDLoss and MGDLoss against plain-python loops."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from kd_suite.losses import ATLoss, FitNetLoss, MGDLoss, PKDLoss
from kd_suite.losses.feature import at_loss, fitnet_loss, mgd_loss, mgd_mask, pkd_loss
from kd_suite.outputs import ParsingOutput, TapInfo


def _rand(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _feat(x: torch.Tensor) -> ParsingOutput:
    return ParsingOutput(embedding=x)


# ---------------------------------------------------------------- FitNet
def test_fitnet_module_matches_loop_over_channels():
    loss = FitNetLoss(student_tap="embedding")
    loss.bind(TapInfo(3, 8), TapInfo(2, 8))
    loss.double()
    s, t = _rand(2, 3, 3, 4, seed=1), _rand(2, 2, 3, 4, seed=2)
    w = loss.adapter.weight[:, :, 0, 0].tolist()  # (C_t, C_s)
    total, count = 0.0, 0
    for b in range(2):
        for o in range(2):
            for y in range(3):
                for x in range(4):
                    r = sum(w[o][c] * s[b, c, y, x].item() for c in range(3))
                    total += (r - t[b, o, y, x].item()) ** 2
                    count += 1
    assert loss(_feat(s), _feat(t)).item() == pytest.approx(total / count, rel=1e-10)


def test_fitnet_zero_with_identity_regressor_and_resizes_student():
    loss = FitNetLoss(student_tap="embedding")
    loss.bind(TapInfo(2, 8), TapInfo(2, 8))
    with torch.no_grad():
        loss.adapter.weight.copy_(torch.eye(2)[:, :, None, None])
    t = torch.randn(1, 2, 4, 4)
    assert loss(_feat(t), _feat(t)).item() == 0.0
    big = torch.randn(1, 2, 8, 8)
    expected = fitnet_loss(F.interpolate(big, size=(4, 4), mode="bilinear", align_corners=False), t)
    torch.testing.assert_close(loss(_feat(big), _feat(t)), expected)
    no_resize = FitNetLoss(student_tap="embedding", resize_student=False)
    no_resize.bind(TapInfo(2, 8), TapInfo(2, 8))
    with pytest.raises(ValueError, match="shapes differ"):
        no_resize(_feat(big), _feat(t))
    with_bn = FitNetLoss(student_tap="embedding", norm=True)
    with_bn.bind(TapInfo(2, 8), TapInfo(3, 8))
    assert isinstance(with_bn.adapter[1], nn.BatchNorm2d)


def test_fitnet_gradcheck():
    s = _rand(1, 2, 4, 4).requires_grad_()
    assert torch.autograd.gradcheck(lambda x: fitnet_loss(x, _rand(1, 2, 4, 4, seed=3)), (s,))


# ---------------------------------------------------------------- AT
def _loop_at(s: torch.Tensor, t: torch.Tensor) -> float:
    n, _, h, w = s.shape
    total = 0.0
    for b in range(n):
        maps = []
        for f in (s, t):
            a = [
                sum(f[b, c, y, x].item() ** 2 for c in range(f.shape[1])) / f.shape[1]
                for y in range(h)
                for x in range(w)
            ]
            norm = math.sqrt(sum(v * v for v in a))
            maps.append([v / norm for v in a])
        total += sum((u - v) ** 2 for u, v in zip(*maps))
    return total / (n * h * w)


def test_at_matches_loop_with_different_channels():
    s, t = _rand(2, 3, 3, 5, seed=4), _rand(2, 7, 3, 5, seed=5)
    assert at_loss(s, t).item() == pytest.approx(_loop_at(s, t), rel=1e-10)
    assert ATLoss(student_tap="embedding")(_feat(s), _feat(t)).item() == pytest.approx(_loop_at(s, t), rel=1e-10)


def test_at_zero_scale_invariant_gradcheck_and_errors():
    t = _rand(1, 2, 4, 4, seed=6)
    assert at_loss(3.0 * t, t).item() < 1e-20  # the normalised attention map ignores the feature scale
    s = _rand(1, 2, 4, 4, seed=7).requires_grad_()
    assert torch.autograd.gradcheck(lambda x: at_loss(x, t), (s,))
    with pytest.raises(ValueError, match="spatial"):
        at_loss(torch.randn(1, 2, 4, 4), torch.randn(1, 2, 4, 5))
    big = torch.randn(1, 2, 8, 8)
    expected = at_loss(F.interpolate(big, size=(4, 4), mode="bilinear", align_corners=False), t.float())
    torch.testing.assert_close(ATLoss(student_tap="embedding")(_feat(big), _feat(t.float())), expected)


# ---------------------------------------------------------------- PKD
def _loop_pkd(s: torch.Tensor, t: torch.Tensor) -> float:
    n, c, h, w = s.shape
    normed = []
    for f in (s, t):
        out = {}
        for k in range(c):
            vals = [f[b, k, y, x].item() for b in range(n) for y in range(h) for x in range(w)]
            mean = sum(vals) / len(vals)
            std = math.sqrt(sum((v - mean) ** 2 for v in vals) / (len(vals) - 1))
            out[k] = [(v - mean) / (std + 1e-6) for v in vals]
        normed.append(out)
    sq = [(a - b) ** 2 for k in range(c) for a, b in zip(normed[0][k], normed[1][k])]
    return sum(sq) / len(sq) / 2


def test_pkd_matches_loop_and_module():
    s, t = _rand(2, 3, 3, 4, seed=8), _rand(2, 3, 3, 4, seed=9)
    assert pkd_loss(s, t).item() == pytest.approx(_loop_pkd(s, t), rel=1e-10)
    assert PKDLoss(student_tap="embedding")(_feat(s), _feat(t)).item() == pytest.approx(_loop_pkd(s, t), rel=1e-10)


def test_pkd_ignores_affine_changes_per_channel_and_gradcheck():
    t = _rand(2, 2, 4, 4, seed=10)
    shifted = t * torch.tensor([2.0, 0.5], dtype=torch.float64)[None, :, None, None] + 3.0
    assert pkd_loss(shifted, t).item() < 1e-10
    s = _rand(1, 2, 4, 4, seed=11).requires_grad_()
    assert torch.autograd.gradcheck(lambda x: pkd_loss(x, t[:1]), (s,))
    with pytest.raises(ValueError, match="shapes differ"):
        pkd_loss(torch.randn(1, 2, 4, 4), torch.randn(1, 3, 4, 4))


# ---------------------------------------------------------------- MGD
def test_mgd_mask_probability_and_replay():
    m = mgd_mask((4, 1, 64, 64), 0.65, torch.Generator().manual_seed(0))
    assert set(m.unique().tolist()) <= {0.0, 1.0}
    assert abs((m == 0).float().mean().item() - 0.65) < 0.02
    torch.testing.assert_close(m, mgd_mask((4, 1, 64, 64), 0.65, torch.Generator().manual_seed(0)))
    assert mgd_mask((2, 1, 3, 3), 0.0).eq(1).all() and mgd_mask((2, 1, 3, 3), 1.0).eq(0).all()
    with pytest.raises(ValueError, match="mask_ratio"):
        mgd_mask((1, 1, 2, 2), 1.5)


def test_mgd_module_matches_loop_with_replayed_mask():
    loss = MGDLoss(student_tap="embedding", alpha=0.5, mask_ratio=0.5, seed=7)
    loss.bind(TapInfo(3, 8), TapInfo(2, 8))
    loss.double()
    s, t = _rand(2, 3, 4, 4, seed=12), _rand(2, 2, 4, 4, seed=13)
    value = loss(_feat(s), _feat(t)).item()
    # replay: the mask is rand(B, 1, H, W) from a generator seeded 7, zero where rand > 1 − λ
    rand = torch.rand((2, 1, 4, 4), generator=torch.Generator().manual_seed(7))
    keep = [[[rand[b, 0, y, x].item() <= 0.5 for x in range(4)] for y in range(4)] for b in range(2)]
    w, bias = loss.align.weight[:, :, 0, 0].tolist(), loss.align.bias.tolist()
    masked = torch.zeros(2, 2, 4, 4, dtype=torch.float64)
    for b in range(2):
        for o in range(2):
            for y in range(4):
                for x in range(4):
                    aligned = bias[o] + sum(w[o][c] * s[b, c, y, x].item() for c in range(3))
                    masked[b, o, y, x] = aligned if keep[b][y][x] else 0.0
    gen = loss.generation(masked)
    total = sum(
        (gen[b, c, y, x].item() - t[b, c, y, x].item()) ** 2
        for b in range(2)
        for c in range(2)
        for y in range(4)
        for x in range(4)
    )
    assert value == pytest.approx(0.5 * total / 2, rel=1e-10)
    twin = MGDLoss(student_tap="embedding", alpha=0.5, mask_ratio=0.5, seed=7)
    twin.bind(TapInfo(3, 8), TapInfo(2, 8))
    twin.load_state_dict(loss.state_dict())
    assert twin.double()(_feat(s), _feat(t)).item() == value  # same seed, same mask
    assert loss(_feat(s), _feat(t)).item() != value  # the generator moved on: a new mask


def test_mgd_channel_mask_and_gradcheck():
    loss = MGDLoss(student_tap="embedding", mask_on_channel=True, mask_ratio=0.5, seed=0)
    loss.bind(TapInfo(2, 8), TapInfo(2, 8))
    assert isinstance(loss.align, nn.Identity)
    gen = nn.Conv2d(2, 2, 3, padding=1).double()
    mask = mgd_mask((1, 1, 4, 4), 0.5, torch.Generator().manual_seed(1)).double()
    t = _rand(1, 2, 4, 4, seed=14)
    s = _rand(1, 2, 4, 4, seed=15).requires_grad_()
    assert torch.autograd.gradcheck(lambda x: mgd_loss(x, t, gen, mask, 1.0), (s,))
    s32, t32 = s.detach().float(), t.float()
    channel_mask = mgd_mask((1, 2, 1, 1), 0.5, torch.Generator().manual_seed(0))  # replay of the module's draw
    expected = mgd_loss(s32, t32, loss.generation, channel_mask, loss.alpha)
    torch.testing.assert_close(loss(_feat(s32), _feat(t32)), expected)
