"""KDLoss and DKDLoss against plain-python loops over pixels and classes."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from kd_suite.data.batch import ParsingBatch
from kd_suite.losses import DKDLoss, KDLoss
from kd_suite.losses.logit import dkd_loss, kd_loss
from kd_suite.outputs import ParsingOutput

from .common import kl_list, parsing_batch, small_labels, softmax_list


def _loop_kd(s: torch.Tensor, t: torch.Tensor, tau: float, per: str) -> float:
    n, c, h, w = s.shape
    total = 0.0
    for b in range(n):
        for y in range(h):
            for x in range(w):
                p_t = softmax_list([t[b, k, y, x].item() / tau for k in range(c)])
                p_s = softmax_list([s[b, k, y, x].item() / tau for k in range(c)])
                total += kl_list(p_t, p_s)
    return total / (n * h * w if per == "pixel" else n) * tau**2


@pytest.mark.parametrize("reduction", ["pixel", "batch"])
@pytest.mark.parametrize("tau", [1.0, 4.0])
def test_kd_matches_loop(reduction, tau):
    g = torch.Generator().manual_seed(1)
    s, t = torch.randn(2, 4, 3, 5, generator=g, dtype=torch.float64), torch.randn(2, 4, 3, 5, generator=g).double()
    assert kd_loss(s, t, tau, reduction).item() == pytest.approx(_loop_kd(s, t, tau, reduction), rel=1e-10)


def test_kd_zero_at_equality_and_gradcheck():
    s = torch.randn(1, 2, 4, 4, dtype=torch.float64, requires_grad=True)
    t = torch.randn(1, 2, 4, 4, dtype=torch.float64)
    assert kd_loss(t, t, 2.0).abs().item() < 1e-12
    assert torch.autograd.gradcheck(lambda x: kd_loss(x, t, 2.0), (s,))


def test_kd_module_resizes_teacher_to_student():
    s = ParsingOutput(logits=torch.randn(2, 3, 4, 4))
    t = ParsingOutput(logits=torch.randn(2, 3, 8, 8))
    expected = kd_loss(s.logits, F.interpolate(t.logits, size=(4, 4), mode="bilinear", align_corners=False), 2.0)
    torch.testing.assert_close(KDLoss(temperature=2.0)(s, t), expected)
    with pytest.raises(ValueError, match="shapes differ"):
        KDLoss(resize_teacher=False)(s, t)


def test_kd_errors():
    with pytest.raises(ValueError, match="reduction"):
        KDLoss(reduction="mean")
    with pytest.raises(ValueError, match="shapes differ"):
        kd_loss(torch.randn(2, 3, 4, 4), torch.randn(2, 4, 4, 4))
    with pytest.raises(ValueError, match="at least 2 dims"):
        kd_loss(torch.randn(3), torch.randn(3))


def _loop_dkd(s: torch.Tensor, t: torch.Tensor, target: torch.Tensor, tau: float, alpha: float, beta: float) -> float:
    """TCKD on [p_gt, 1 − p_gt]; NCKD on the softmax over the non-target classes only."""
    tckd = nckd = 0.0
    for i in range(len(target)):
        gt = int(target[i])
        zs, zt = [v / tau for v in s[i].tolist()], [v / tau for v in t[i].tolist()]
        ps, pt = softmax_list(zs), softmax_list(zt)
        tckd += kl_list([pt[gt], 1 - pt[gt]], [ps[gt], 1 - ps[gt]])
        rest = [k for k in range(len(zs)) if k != gt]
        nckd += kl_list(softmax_list([zt[k] for k in rest]), softmax_list([zs[k] for k in rest]))
    return (alpha * tckd + beta * nckd) / len(target) * tau**2


def test_dkd_matches_loop_and_gradcheck():
    g = torch.Generator().manual_seed(2)
    s, t = torch.randn(7, 4, generator=g).double(), torch.randn(7, 4, generator=g).double()
    target = torch.randint(0, 4, (7,), generator=g)
    got = dkd_loss(s, t, target, 3.0, 1.5, 8.0).item()
    assert got == pytest.approx(_loop_dkd(s, t, target, 3.0, 1.5, 8.0), rel=1e-9)
    assert dkd_loss(t, t, target, 3.0).abs().item() < 1e-12
    x = torch.randn(3, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda z: dkd_loss(z, t[:3, :3], target[:3] % 3, 2.0), (x,))


def test_dkd_module_drops_ignore_pixels_and_resizes_labels():
    g = torch.Generator().manual_seed(3)
    s = ParsingOutput(logits=torch.randn(2, 3, 6, 6, generator=g).double())
    t = ParsingOutput(logits=torch.randn(2, 3, 6, 6, generator=g).double())
    batch = parsing_batch(seed=3)  # 12×12 mask of 2×2 blocks with some 255
    labels = small_labels(batch)
    rows = [(b, y, x) for b in range(2) for y in range(6) for x in range(6) if labels[b, y, x] != 255]
    assert 0 < len(rows) < 72
    s_rows = torch.stack([s.logits[b, :, y, x] for b, y, x in rows])
    t_rows = torch.stack([t.logits[b, :, y, x] for b, y, x in rows])
    target = torch.tensor([int(labels[b, y, x]) for b, y, x in rows])
    got = DKDLoss(temperature=2.0, alpha=1.0, beta=2.0)(s, t, batch).item()
    assert got == pytest.approx(_loop_dkd(s_rows, t_rows, target, 2.0, 1.0, 2.0), rel=1e-9)


def test_dkd_errors():
    with pytest.raises(ValueError, match="class ids"):
        dkd_loss(torch.randn(3, 4), torch.randn(3, 4), torch.tensor([0, 4, 1]))
    with pytest.raises(ValueError, match="K >= 2"):
        dkd_loss(torch.randn(3, 4, 2), torch.randn(3, 4, 2), torch.tensor([0, 1, 1]))
    s = ParsingOutput(logits=torch.randn(1, 3, 4, 4))
    all_ignore = ParsingBatch(image=torch.zeros(1, 3, 4, 4), mask=torch.full((1, 4, 4), 255))
    assert DKDLoss()(s, s, all_ignore).item() == 0.0
    with pytest.raises(ValueError, match="batch.mask"):  # two masks for one image
        DKDLoss()(s, s, parsing_batch(size=8))
    batch = parsing_batch(size=8)
    one = ParsingBatch(image=batch.image[:1], mask=batch.mask[:1])
    assert math.isfinite(DKDLoss()(s, ParsingOutput(logits=torch.randn(1, 3, 4, 4)), one).item())
