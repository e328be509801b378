"""Pose distillation terms against straightforward loop implementations written here from the formulas/references."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from kd_suite.data.batch import PoseBatch
from kd_suite.outputs import PoseOutput
from kd_suite.tasks.pose import (
    AttentionLoss,
    CoordDistillLoss,
    DenseGuidedHeatmapLoss,
    FPDLoss,
    OKDHPLoss,
    ScoreDistillLoss,
    SimulatedHeatmapLoss,
    SpatialClassificationLoss,
    joints_mse,
)

B, K, H, W, HEADS, P = 2, 3, 8, 6, 2, 4  # token grid 2×2


def make(seed: int, grad: bool = False) -> PoseOutput:
    g = torch.Generator().manual_seed(seed)
    attn = [torch.softmax(torch.randn(B, HEADS, K, K + P, generator=g), -1)[..., K:] for _ in range(3)]
    out = PoseOutput(
        heatmaps=torch.rand(B, K, H, W, generator=g),
        coords=torch.rand(B, K, 2, generator=g) * 1.2 - 0.1,
        scores=torch.randn(B, K, generator=g),
        sigmas=torch.rand(B, K, 2, generator=g) * 0.2 + 0.05,
        attentions=attn,
        aux_heatmaps=[torch.rand(B, K, H, W, generator=g)],
    )
    if grad:
        for name in ("heatmaps", "coords", "scores", "sigmas"):
            setattr(out, name, getattr(out, name).requires_grad_())
        out.attentions = [a.requires_grad_() for a in out.attentions]
        out.aux_heatmaps = [a.requires_grad_() for a in out.aux_heatmaps]
    return out


def batch() -> PoseBatch:
    g = torch.Generator().manual_seed(99)
    return PoseBatch(
        image=torch.zeros(B, 3, 4 * H, 4 * W),
        keypoints=torch.rand(B, K, 2, generator=g) * 20,
        visible=torch.tensor([[1.0, 0.0, 1.0], [1.0, 1.0, 1.0]]),
        heatmaps=torch.rand(B, K, H, W, generator=g) ** 4,
        inv_affine=torch.eye(3)[:2].expand(B, 2, 3).clone(),
    )


def loop_mse(p: torch.Tensor, g: torch.Tensor, w: torch.Tensor, half: bool = False) -> float:
    """HRNet JointsMSELoss: per joint MSE(p_k·w_k, g_k·w_k) over (N, h·w), averaged over joints."""
    total = 0.0
    for k in range(K):
        acc = 0.0
        for n in range(B):
            for y in range(H):
                for x in range(W):
                    acc += (p[n, k, y, x].item() * w[n, k].item() - g[n, k, y, x].item() * w[n, k].item()) ** 2
        total += (0.5 if half else 1.0) * acc / (B * H * W)
    return total / K


def loop_kl(q: list[float], p: list[float]) -> float:
    return sum(a * (math.log(max(a, 1e-8)) - math.log(max(b, 1e-8))) for a, b in zip(q, p))


@pytest.mark.parametrize("half", [False, True])
def test_joints_mse_and_fpd(half):
    s, t, b = make(0), make(1), batch()
    assert joints_mse(s.heatmaps, b.heatmaps, b.visible, half).item() == pytest.approx(
        loop_mse(s.heatmaps, b.heatmaps, b.visible, half), rel=1e-5
    )
    fpd = FPDLoss(alpha=0.3, half=half)(s, t, b)
    ref = 0.7 * loop_mse(s.heatmaps, b.heatmaps, b.visible, half) + 0.3 * loop_mse(
        s.heatmaps, t.heatmaps, b.visible, half
    )
    assert fpd.item() == pytest.approx(ref, rel=1e-5)


def test_okdhp_matches_the_reference_loop():
    s, t, b = make(0), make(1), batch()
    total = 0.0  # zhengli97/OKDHP JointsKLDLoss: per joint log_softmax(w·s), softmax(w·t), KL summed, / N / (h·w)
    for k in range(K):
        for n in range(B):
            ws = [v * b.visible[n, k].item() for v in s.heatmaps[n, k].flatten().tolist()]
            wt = [v * b.visible[n, k].item() for v in t.heatmaps[n, k].flatten().tolist()]
            zs, zt = sum(math.exp(v) for v in ws), sum(math.exp(v) for v in wt)
            total += loop_kl([math.exp(v) / zt for v in wt], [math.exp(v) / zs for v in ws])
    assert OKDHPLoss()(s, t, b).item() == pytest.approx(total / B / (H * W), rel=1e-5)


@pytest.mark.parametrize(("loss", "use_visible"), [("l1", False), ("smooth_l1", True)])
def test_coord_distill(loss, use_visible):
    s, t, b = make(0), make(1), batch()
    beta, total = 0.05, 0.0
    for n in range(B):
        for k in range(K):
            c = 1 / (1 + math.exp(-t.scores[n, k].item())) * (b.visible[n, k].item() if use_visible else 1.0)
            for d in range(2):
                e = abs(s.coords[n, k, d].item() - t.coords[n, k, d].item())
                total += c * (e if loss == "l1" else (0.5 * e * e / beta if e < beta else e - 0.5 * beta))
    got = CoordDistillLoss(loss=loss, beta=beta, use_visible=use_visible)(s, t, b)
    assert got.item() == pytest.approx(total / (B * K * 2), rel=1e-5)


def test_simulated_heatmap_loss():
    s, t, b = make(0), make(1), batch()
    total = 0.0
    for n in range(B):
        for k in range(K):
            mx, my = s.coords[n, k, 0].item() * W, s.coords[n, k, 1].item() * H
            sx, sy = s.sigmas[n, k, 0].item() * W, s.sigmas[n, k, 1].item() * H
            inside = mx - 3 * sx < W and my - 3 * sy < H and mx + 3 * sx + 1 >= 0 and my + 3 * sy + 1 >= 0
            w = b.visible[n, k].item() * inside
            for y in range(H):
                for x in range(W):
                    g = math.exp(-0.5 * ((x - mx) ** 2 / sx**2 + (y - my) ** 2 / sy**2)) if inside else 0.0
                    total += (w * g - w * t.heatmaps[n, k, y, x].item()) ** 2
    got = SimulatedHeatmapLoss()(s, t, b)
    assert got.item() == pytest.approx(total / (B * K * H * W), rel=1e-4)


def test_score_distill():
    s, t, b = make(0), make(1), batch()
    total = 0.0
    for n in range(B):
        for k in range(K):
            x, y = s.coords[n, k].tolist()
            xi = min(max(round(min(max(x, 0), 1) * W), 0), W - 1)
            yi = min(max(round(min(max(y, 0), 1) * H), 0), H - 1)
            target = t.heatmaps[n, k, yi, xi].item() if (0 <= x <= 1 and 0 <= y <= 1) else 0.0
            w = b.visible[n, k].item()
            total += abs(w / (1 + math.exp(-s.scores[n, k].item())) - w * target)
    assert ScoreDistillLoss()(s, t, b).item() == pytest.approx(total / (B * K), rel=1e-5)


def head_average(a: torch.Tensor, n: int, k: int) -> list[float]:
    rows = []
    for h in range(HEADS):
        row = a[n, h, k].tolist()
        rows.append([v / sum(row) for v in row])
    return [sum(r[p] for r in rows) / HEADS for p in range(P)]


def test_attention_loss_heatmap_mode():
    s, t, b = make(0), make(1), batch()
    total, wsum = 0.0, 0.0
    for n in range(B):
        for k in range(K):
            cells = []
            for gy in range(2):
                for gx in range(2):
                    block = t.heatmaps[n, k, gy * 4 : gy * 4 + 4, gx * 3 : gx * 3 + 3]  # 8×6 map → 2×2 grid
                    cells.append(block.clamp_min(0).mean().item())
            q = [c / sum(cells) for c in cells]
            w = b.visible[n, k].item()
            total += w * loop_kl(q, head_average(s.attentions[-1], n, k))
            wsum += w
    assert AttentionLoss(mode="heatmap")(s, t, b).item() == pytest.approx(total / wsum, rel=1e-5)


def test_attention_loss_attn_mode_uniform_layer_map():
    s, t, b = make(0), make(1), batch()
    t.attentions = t.attentions[:2]  # teacher 2 layers, student 3: l ↦ round((l+1)·2/3) − 1 = 0, 0, 1
    terms = []
    for ls, lt in ((0, 0), (1, 0), (2, 1)):
        total = sum(
            loop_kl(head_average(t.attentions[lt], n, k), head_average(s.attentions[ls], n, k))
            for n in range(B)
            for k in range(K)
        )
        terms.append(total / (B * K))
    got = AttentionLoss(mode="attn", layers="uniform", use_visible=False)(s, t, b)
    assert got.item() == pytest.approx(sum(terms) / 3, rel=1e-5)


def test_attention_loss_per_head_and_all_layers():
    s, t, b = make(0), make(1), batch()
    total, wsum = 0.0, 0.0
    for n in range(B):
        for k in range(K):
            w = b.visible[n, k].item()
            for h in range(HEADS):
                rs, rt = s.attentions[-1][n, h, k].tolist(), t.attentions[-1][n, h, k].tolist()
                total += w * loop_kl([v / sum(rt) for v in rt], [v / sum(rs) for v in rs]) / HEADS
            wsum += w
    got = AttentionLoss(mode="attn", per_head=True)(s, t, b)
    assert got.item() == pytest.approx(total / wsum, rel=1e-5)
    every = AttentionLoss(mode="heatmap", layers="all")(s, t, b)
    last_of = [AttentionLoss(mode="heatmap")(PoseOutput(attentions=[a]), t, b) for a in s.attentions]
    assert every.item() == pytest.approx(sum(x.item() for x in last_of) / 3, rel=1e-6)


def test_dense_guided_loss_drops_guides_with_its_seeded_generator():
    s, b = make(0), batch()
    guides = [make(1), make(2), make(3)]
    loss = DenseGuidedHeatmapLoss(binarization="clip", theta=0.1, drop_num=1, seed=7)
    got = loss(s, guides[0], b, guides=guides[1:])  # the teacher, then the other guides
    kept = sorted(torch.randperm(3, generator=torch.Generator().manual_seed(7))[1:].tolist())
    ref = 0.0
    for i in kept:
        g = guides[i].heatmaps.clone()
        for n in range(B):
            for k in range(K):
                peak = g[n, k].max().item()
                g[n, k] = torch.where(g[n, k] >= 0.1 * peak, g[n, k], torch.zeros_like(g[n, k]))
        ref += loop_mse(s.heatmaps, g, b.visible) / len(kept)
    assert got.item() == pytest.approx(ref, rel=1e-5)
    assert len(loss.kept(4)) == 3 and DenseGuidedHeatmapLoss().kept(2) == [0, 1]  # auto: drop 1 only from ≥ 3
    dense = DenseGuidedHeatmapLoss(binarization="none", drop_num=0, aggregate="sum", self_aux=True)
    total = dense(s, guides[0], b, guides=guides[1:])
    ref = sum(loop_mse(s.heatmaps, g.heatmaps, b.visible) for g in guides)
    ref += loop_mse(s.aux_heatmaps[0], s.heatmaps, b.visible)  # the deeper head guides the shallow one
    assert total.item() == pytest.approx(ref, rel=1e-5)


def test_spatial_classification_modes():
    s, t, b = make(0), make(1), batch()
    ce = kl = bce = 0.0
    wsum = b.visible.sum().item()
    for n in range(B):
        for k in range(K):
            w = b.visible[n, k].item()
            logits = s.heatmaps[n, k].flatten().tolist()
            gt = b.heatmaps[n, k].flatten().tolist()
            z = sum(math.exp(v) for v in logits)
            ce += -w * (logits[gt.index(max(gt))] - math.log(z))
            zy = sum(math.exp(v) for v in gt)
            kl += w * loop_kl([math.exp(v) / zy for v in gt], [math.exp(v) / z for v in logits])
            tmap = t.heatmaps[n, k].flatten().tolist()
            target = [1.0 if v >= 0.5 * max(tmap) else 0.0 for v in tmap]
            terms = [
                -(y * math.log(1 / (1 + math.exp(-x))) + (1 - y) * math.log(1 - 1 / (1 + math.exp(-x))))
                for x, y in zip(logits, target)
            ]
            bce += w * sum(terms) / (H * W)
    assert SpatialClassificationLoss("spatial_ce")(s, t, b).item() == pytest.approx(ce / wsum, rel=1e-5)
    assert SpatialClassificationLoss("spatial_kl")(s, t, b).item() == pytest.approx(kl / wsum, rel=1e-5)
    assert SpatialClassificationLoss("bce_binary")(s, t, b).item() == pytest.approx(bce / wsum, rel=1e-5)


@pytest.mark.parametrize(
    "loss",
    [
        FPDLoss(),
        OKDHPLoss(),
        CoordDistillLoss(),
        SimulatedHeatmapLoss(),
        ScoreDistillLoss(),
        AttentionLoss(),
        DenseGuidedHeatmapLoss(binarization="gt_gated"),
        SpatialClassificationLoss(),
    ],
    ids=lambda x: type(x).__name__,
)
def test_gradients_reach_the_student_only_and_vanish_at_equality(loss):
    s, t, b = make(0, grad=True), make(1, grad=True), batch()
    value = loss(s, t, b)
    assert value.ndim == 0 and torch.isfinite(value)
    value.backward()
    student_grads = [x.grad for x in (s.heatmaps, s.coords, s.scores, s.sigmas, *s.attentions) if x.grad is not None]
    assert student_grads and any(g.abs().sum() > 0 for g in student_grads)
    for x in (t.heatmaps, t.coords, t.scores, t.sigmas, *t.attentions):
        assert x.grad is None


def test_terms_are_zero_when_student_equals_target():
    t, b = make(1), batch()
    assert FPDLoss(alpha=1.0)(t, t, b).item() == 0.0
    assert CoordDistillLoss()(t, t, b).item() == 0.0
    assert AttentionLoss(mode="attn")(t, t, b).item() == pytest.approx(0.0, abs=1e-7)
    assert OKDHPLoss()(t, t, b).item() == pytest.approx(0.0, abs=1e-7)


def test_clear_errors():
    s, t, b = make(0), make(1), batch()
    with pytest.raises(ValueError, match="PoseBatch"):
        FPDLoss()(s, t, None)
    with pytest.raises(ValueError, match="square grid"):
        s3 = make(0)
        s3.attentions = [a[..., :3] for a in s3.attentions]
        AttentionLoss()(s3, t, b)
    with pytest.raises(ValueError, match="uniform"):
        AttentionLoss(mode="heatmap", layers="uniform")
    with pytest.raises(ValueError, match="drop all"):
        DenseGuidedHeatmapLoss(drop_num=1)(s, t, b)
    t.heatmaps = F.interpolate(t.heatmaps, scale_factor=2.0)  # other resolution: resized, not an error
    assert torch.isfinite(FPDLoss()(s, t, b))
