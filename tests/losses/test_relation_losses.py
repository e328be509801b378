"""DISTLoss and SKDPairwiseLoss against plain-python loops."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from kd_suite.losses import DISTLoss, SKDPairwiseLoss
from kd_suite.losses.relation import dist_loss, pearson, skd_pairwise_loss
from kd_suite.outputs import ParsingOutput

from .common import parsing_batch, small_labels, softmax_list


# ---------------------------------------------------------------- DIST
def _pearson_list(a: list[float], b: list[float]) -> float:
    ma, mb = sum(a) / len(a), sum(b) / len(b)
    da, db = [v - ma for v in a], [v - mb for v in b]
    num = sum(x * y for x, y in zip(da, db))
    return num / (math.sqrt(sum(x * x for x in da)) * math.sqrt(sum(y * y for y in db)) + 1e-8)


def _loop_dist(rows_s: list[list[float]], rows_t: list[list[float]], beta: float, gamma: float, tau: float) -> float:
    """DIST on pixel rows (P lists of C logits): inter over rows, intra over class columns of all P rows."""
    ys = [softmax_list([v / tau for v in r]) for r in rows_s]
    yt = [softmax_list([v / tau for v in r]) for r in rows_t]
    inter = 1 - sum(_pearson_list(a, b) for a, b in zip(ys, yt)) / len(ys)
    n_cls = len(ys[0])
    cols = [([r[j] for r in ys], [r[j] for r in yt]) for j in range(n_cls)]
    intra = 1 - sum(_pearson_list(a, b) for a, b in cols) / n_cls
    return tau**2 * (beta * inter + gamma * intra)


def _pixel_rows(x: torch.Tensor, keep=None) -> list[list[float]]:
    n, c, h, w = x.shape
    return [
        [x[b, k, y, i].item() for k in range(c)]
        for b in range(n)
        for y in range(h)
        for i in range(w)
        if keep is None or keep[b, y, i]
    ]


def _dist_without_flatten(s: torch.Tensor, t: torch.Tensor) -> float:
    """mmrazor-style DIST applied to raw 4-D probabilities: the intra term correlates over the batch dim only."""
    ys, yt = s.softmax(1), t.softmax(1)

    def corr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:  # along dim 1
        a, b = a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True)
        return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1) + 1e-8)

    return (1 - corr(ys, yt).mean() + 1 - corr(ys.transpose(0, 1), yt.transpose(0, 1)).mean()).item()


def test_dist_flattens_first_and_matches_loop_not_the_4d_variant():
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(2, 20, 8, 8, generator=g).double(), torch.randn(2, 20, 8, 8, generator=g).double()
    ours = dist_loss(s, t).item()
    assert ours == pytest.approx(_loop_dist(_pixel_rows(s), _pixel_rows(t), 1.0, 1.0, 1.0), rel=1e-9)
    assert abs(ours - _dist_without_flatten(s, t)) > 1e-4  # methods.md: mmrazor on 4-D gives another intra term


@pytest.mark.parametrize(("beta", "gamma", "tau"), [(1.0, 1.0, 1.0), (2.0, 0.5, 4.0)])
def test_dist_weights_and_temperature(beta, gamma, tau):
    g = torch.Generator().manual_seed(1)
    s, t = torch.randn(2, 4, 3, 3, generator=g).double(), torch.randn(2, 4, 3, 3, generator=g).double()
    expected = _loop_dist(_pixel_rows(s), _pixel_rows(t), beta, gamma, tau)
    assert dist_loss(s, t, beta, gamma, tau).item() == pytest.approx(expected, rel=1e-9)
    flat_s, flat_t = s.permute(0, 2, 3, 1).reshape(-1, 4), t.permute(0, 2, 3, 1).reshape(-1, 4)
    assert dist_loss(flat_s, flat_t, beta, gamma, tau).item() == pytest.approx(expected, rel=1e-9)  # (P, C) input


def test_dist_degenerate_columns_give_zero_correlation_not_nan():
    const = torch.zeros(5, 3, dtype=torch.float64)  # uniform probabilities: every row and column has zero variance
    assert pearson(const, torch.randn(5, 3, dtype=torch.float64)).eq(0).all()
    z = torch.zeros(1, 3, 4, 4, dtype=torch.float64, requires_grad=True)
    value = dist_loss(z, torch.randn(1, 3, 4, 4, dtype=torch.float64))
    assert value.item() == pytest.approx(2.0)  # both correlations are 0 → 1 + 1
    value.backward()
    assert torch.isfinite(z.grad).all()


def test_dist_near_zero_at_equality_and_gradcheck():
    t = torch.randn(1, 3, 4, 4, dtype=torch.float64)
    assert 0 <= dist_loss(t, t).item() < 1e-4  # not exactly 0: the +1e-8 in the Pearson denominator
    s = torch.randn(1, 2, 4, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: dist_loss(x, t[:, :2], 1.0, 1.0, 2.0), (s,))


def test_dist_module_ignore_index_and_resize():
    g = torch.Generator().manual_seed(2)
    s = ParsingOutput(logits=torch.randn(2, 3, 6, 6, generator=g).double())
    t = ParsingOutput(logits=torch.randn(2, 3, 6, 6, generator=g).double())
    batch = parsing_batch(seed=2)
    keep = small_labels(batch) != 255
    assert not keep.all()
    masked = DISTLoss(ignore_index=255)(s, t, batch).item()
    assert masked == pytest.approx(_loop_dist(_pixel_rows(s.logits, keep), _pixel_rows(t.logits, keep), 1, 1, 1))
    every = DISTLoss()(s, t, None).item()  # default: every pixel, no batch needed (reference behaviour)
    assert every == pytest.approx(_loop_dist(_pixel_rows(s.logits), _pixel_rows(t.logits), 1, 1, 1))
    big_t = ParsingOutput(logits=torch.randn(2, 3, 12, 12, generator=g))
    resized = F.interpolate(big_t.logits, size=(6, 6), mode="bilinear", align_corners=False)
    s32 = ParsingOutput(logits=s.logits.float())
    torch.testing.assert_close(DISTLoss()(s32, big_t), dist_loss(s32.logits, resized))
    with pytest.raises(ValueError, match="shapes differ"):
        DISTLoss(resize_teacher=False)(s32, big_t)
    with pytest.raises(ValueError, match="valid mask"):
        dist_loss(s.logits, t.logits, valid=torch.ones(5, dtype=torch.bool))


# ---------------------------------------------------------------- SKD
def _loop_pool(f: torch.Tensor, kh: int, kw: int) -> list[list[list[list[float]]]]:
    """Max-pool with stride = kernel and ceil mode: [b][y][x] → channel vector."""
    n, c, h, w = f.shape
    out = []
    for b in range(n):
        rows = []
        for y0 in range(0, h, kh):
            row = []
            for x0 in range(0, w, kw):
                cells = [(y, x) for y in range(y0, min(y0 + kh, h)) for x in range(x0, min(x0 + kw, w))]
                row.append([max(f[b, k, y, x].item() for y, x in cells) for k in range(c)])
            rows.append(row)
        out.append(rows)
    return out


def _loop_skd(s: torch.Tensor, t: torch.Tensor, kh: int, kw: int) -> float:
    total = 0.0
    ps, pt = _loop_pool(s, kh, kw), _loop_pool(t, kh, kw)
    n = len(ps)
    for b in range(n):
        vs = [v for row in ps[b] for v in row]
        vt = [v for row in pt[b] for v in row]

        def cos(vecs, i, j):
            dot = sum(a * c for a, c in zip(vecs[i], vecs[j]))
            return dot / (math.sqrt(sum(a * a for a in vecs[i])) * math.sqrt(sum(a * a for a in vecs[j])))

        hw = len(vs)
        total += sum((cos(vs, i, j) - cos(vt, i, j)) ** 2 for i in range(hw) for j in range(hw)) / hw**2
    return total / n


def test_skd_cirkd_kernel_matches_loop_on_odd_sizes():
    g = torch.Generator().manual_seed(3)
    s, t = torch.randn(2, 3, 5, 7, generator=g).double(), torch.randn(2, 4, 5, 7, generator=g).double()
    assert skd_pairwise_loss(s, t).item() == pytest.approx(_loop_skd(s, t, 2, 2), rel=1e-9)


def test_skd_original_scale_convention_matches_loop():
    g = torch.Generator().manual_seed(4)
    s, t = torch.randn(1, 3, 8, 6, generator=g).double(), torch.randn(1, 2, 8, 6, generator=g).double()
    got = SKDPairwiseLoss(student_tap="embedding", kernel=None, scale=0.5)(
        ParsingOutput(embedding=s), ParsingOutput(embedding=t)
    )
    assert got.item() == pytest.approx(_loop_skd(s, t, 4, 3), rel=1e-9)


def test_skd_zero_at_equality_gradcheck_and_errors():
    t = torch.randn(1, 2, 4, 4, dtype=torch.float64)
    assert skd_pairwise_loss(t, t).item() == 0.0
    s = torch.randn(1, 2, 4, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: skd_pairwise_loss(x, t), (s,))
    with pytest.raises(ValueError, match="exactly one"):
        SKDPairwiseLoss(kernel=2, scale=0.5)
    with pytest.raises(ValueError, match="spatial"):
        skd_pairwise_loss(torch.randn(1, 2, 4, 4), torch.randn(1, 2, 4, 6))
