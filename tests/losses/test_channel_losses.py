"""CWDLoss against a plain-python loop over channels and positions."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from kd_suite.losses import CWDLoss
from kd_suite.losses.channel import cwd_loss
from kd_suite.outputs import ParsingOutput, TapInfo

from .common import kl_list, softmax_list


def _loop_cwd(s: torch.Tensor, t: torch.Tensor, tau: float) -> float:
    n, c = s.shape[:2]
    total = 0.0
    for b in range(n):
        for k in range(c):
            p_t = softmax_list([v / tau for v in t[b, k].flatten().tolist()])
            p_s = softmax_list([v / tau for v in s[b, k].flatten().tolist()])
            total += kl_list(p_t, p_s)
    return total / (n * c) * tau**2


@pytest.mark.parametrize("tau", [1.0, 4.0])
def test_cwd_matches_loop(tau):
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(2, 3, 4, 5, generator=g).double(), torch.randn(2, 3, 4, 5, generator=g).double()
    assert cwd_loss(s, t, tau).item() == pytest.approx(_loop_cwd(s, t, tau), rel=1e-10)


def test_cwd_zero_at_equality_gradcheck_and_errors():
    t = torch.randn(1, 2, 4, 4, dtype=torch.float64)
    assert cwd_loss(t, t, 4.0).abs().item() < 1e-12
    s = torch.randn(1, 2, 4, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: cwd_loss(x, t, 2.0), (s,))
    with pytest.raises(ValueError, match="at least 3 dims"):
        cwd_loss(torch.randn(2, 3), torch.randn(2, 3))
    with pytest.raises(ValueError, match="shapes differ"):
        cwd_loss(torch.randn(1, 2, 4, 4), torch.randn(1, 3, 4, 4))


def test_cwd_on_logits_needs_no_adapter():
    loss = CWDLoss(temperature=4.0)
    loss.bind(TapInfo(3, 8), TapInfo(3, 8))
    assert isinstance(loss.adapter, nn.Identity) and not list(loss.parameters())
    g = torch.Generator().manual_seed(1)
    s, t = torch.randn(2, 3, 4, 4, generator=g), torch.randn(2, 3, 4, 4, generator=g)
    value = loss(ParsingOutput(logits=s), ParsingOutput(logits=t)).item()
    assert value == pytest.approx(_loop_cwd(s.double(), t.double(), 4.0), rel=1e-5)


def test_cwd_feature_adapter_and_resize():
    loss = CWDLoss(student_tap="embedding")
    loss.bind(TapInfo(4, 8), TapInfo(6, 8))
    assert isinstance(loss.adapter, nn.Conv2d) and (loss.adapter.in_channels, loss.adapter.out_channels) == (4, 6)
    s, t = torch.randn(1, 4, 8, 8), torch.randn(1, 6, 4, 4)
    aligned = F.interpolate(loss.adapter(s), size=(4, 4), mode="bilinear", align_corners=False)
    torch.testing.assert_close(loss(ParsingOutput(embedding=s), ParsingOutput(embedding=t)), cwd_loss(aligned, t))
