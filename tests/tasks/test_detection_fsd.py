"""FSD and FGD: mask geometry by hand, the faithful mode against a literal transcription of the reference loop
(docs/methods.md §3.2), and the loss values against straightforward re-computations."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from kd_suite.data.batch import DetectionBatch
from kd_suite.outputs import DetectionOutput, TapInfo
from kd_suite.tasks.detection import FGDLoss, FSDLoss
from kd_suite.tasks.detection.fgd import background_mask, box_interior_mask
from kd_suite.tasks.detection.fsd import faithful_foreground_mask, gaussian_foreground_mask


# ------------------------------------------------------------------------------------------- reference transcriptions
def reference_masks(boxes: list[torch.Tensor], img_shape: tuple[int, int], H: int, W: int) -> tuple:
    """methods.md §3.2 step 2, line by line (per image, per box, torch.linspace grids)."""
    N = len(boxes)
    fg, bg = torch.zeros(N, H, W), torch.ones(N, H, W)
    for i in range(N):
        b = boxes[i].clone()
        b[:, [0, 2]] = boxes[i][:, [0, 2]] / img_shape[1] * W
        b[:, [1, 3]] = boxes[i][:, [1, 3]] / img_shape[0] * H
        wmin, wmax = b[:, 0].floor().int(), b[:, 2].ceil().int()
        hmin, hmax = b[:, 1].floor().int(), b[:, 3].ceil().int()
        area = 1.0 / (hmax + 1 - hmin) / (wmax + 1 - wmin)
        cx, cy = (b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2
        hmax = torch.where(hmax < H, hmax, H)
        wmax = torch.where(wmax < W, wmax, W)
        for j in range(len(b)):
            dh = int(hmax[j] - hmin[j]) // 2
            start_h, end_h = max(0, int(hmin[j]) - dh), min(int(hmax[j]) + dh, H)
            dw = int(wmax[j] - wmin[j]) // 2
            start_w, end_w = max(0, int(wmin[j]) - dw), min(int(wmax[j]) + dw, W)
            a = torch.linspace(start_h, end_h, end_h - start_h).reshape(-1, 1)
            c = torch.linspace(start_w, end_w, end_w - start_w).reshape(1, -1)
            g = torch.exp(-0.5 * ((a - cx[j]) ** 2 / (cx[j] + 1e-8) ** 2 + (c - cy[j]) ** 2 / (cy[j] + 1e-8) ** 2))
            region = fg[i, start_h:end_h, start_w:end_w]
            fg[i, start_h:end_h, start_w:end_w] = torch.maximum(region, area[j] * g)
        for j in range(len(b)):
            hs, ws = slice(int(hmin[j]), int(hmax[j]) + 1), slice(int(wmin[j]), int(wmax[j]) + 1)
            fg[i, hs, ws] = torch.maximum(fg[i, hs, ws], area[j])
        bg[i] = torch.where(fg[i] > 0, 0, 1)
        if bg[i].sum():
            bg[i] /= bg[i].sum()
    return fg, bg


def loop_clean_mask(boxes: list[torch.Tensor], stride: int, H: int, W: int, ratio: float = 1 / 6) -> torch.Tensor:
    """Clean FSD mask pixel by pixel: support value = area, ring = area·Gaussian(σ = ratio·support), max over boxes."""
    out = torch.zeros(len(boxes), H, W)
    for i, bs in enumerate(boxes):
        for x1, y1, x2, y2 in (bs / stride).tolist():
            wmin, wmax, hmin, hmax = math.floor(x1), math.ceil(x2), math.floor(y1), math.ceil(y2)
            area = 1 / ((hmax + 1 - hmin) * (wmax + 1 - wmin))
            sx, sy = ratio * (wmax + 1 - wmin), ratio * (hmax + 1 - hmin)
            cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
            dh, dw = (hmax - hmin) // 2, (wmax - wmin) // 2
            for r in range(H):
                for c in range(W):
                    if hmin <= r <= hmax and wmin <= c <= wmax:
                        v = area
                    elif hmin - dh <= r <= hmax + dh and wmin - dw <= c <= wmax + dw:
                        v = area * math.exp(-0.5 * (((c - cx) / sx) ** 2 + ((r - cy) / sy) ** 2))
                    else:
                        v = 0.0
                    out[i, r, c] = max(out[i, r, c].item(), v)
    return out


def feature_norm(f: torch.Tensor) -> torch.Tensor:
    n, c, h, w = f.shape
    f = f.permute(1, 0, 2, 3).reshape(c, -1)
    f = (f - f.mean(-1, keepdim=True)) / (f.std(-1, keepdim=True) + 1e-6)
    return f.reshape(c, n, h, w).permute(1, 0, 2, 3)


def attention(f: torch.Tensor, temp: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    n, c, h, w = f.shape
    v = f.abs()
    sp = (h * w * F.softmax((v.mean(1, keepdim=True) / temp).view(n, -1), dim=1)).view(n, h, w)
    ch = c * F.softmax(v.mean(2).mean(2) / temp, dim=1)
    return sp, ch


def relation(loss, s: torch.Tensor, t: torch.Tensor, student_mask) -> torch.Tensor:
    def pool(x, conv):
        n, c, h, w = x.shape
        m = F.softmax(conv(x).view(n, 1, h * w), dim=2).unsqueeze(-1)  # (N, 1, HW, 1)
        return torch.matmul(x.view(n, c, h * w).unsqueeze(1), m).view(n, c, 1, 1)

    rel = loss.relation
    out_s = s + rel.channel_add_s(pool(s, student_mask))
    out_t = t + rel.channel_add_t(pool(t, rel.conv_mask_t))
    return F.mse_loss(out_s, out_t, reduction="sum") / len(out_s)


def reference_forward(loss, s, t, fg, bg, kind: str) -> torch.Tensor:
    """The reference forward (FSD ``fg_bgLoss`` or FGD ``FeatureLoss``) with the module's own parameters."""
    s = loss.align(s)
    sp_t, ch_t = attention(t)
    sp_s, ch_s = attention(s)
    w = torch.sqrt(sp_t).unsqueeze(1) * torch.sqrt(ch_t)[..., None, None]
    fs, ft = s * w, t * w
    terms = []
    for m in (fg, bg):
        ms, mt = fs * torch.sqrt(m.unsqueeze(1)), ft * torch.sqrt(m.unsqueeze(1))
        if kind == "fgd":
            terms.append(F.mse_loss(ms, mt, reduction="sum") / len(m))
            continue
        n, c, h, ww = ms.shape
        ps = F.softmax(feature_norm(ms).reshape(-1, h * ww), dim=1)
        pt = F.softmax(feature_norm(mt).reshape(-1, h * ww), dim=1)
        terms.append(torch.sum(-pt * torch.log(1e-5 + ps) + pt * torch.log(1e-5 + pt)) / (c * n))
    mask = torch.sum(torch.abs(ch_s - ch_t)) / len(ch_s) + torch.sum(torch.abs(sp_s - sp_t)) / len(sp_s)
    student_mask = loss.relation.conv_mask_t if loss.relation.conv_mask_s is None else loss.relation.conv_mask_s
    alpha, beta = (loss.alpha_fg, loss.beta_bg) if kind == "fgd" or not loss.faithful else (1.0, 1.0)
    rela = relation(loss, s, t, student_mask)
    return alpha * terms[0] + beta * terms[1] + loss.gamma_mask * mask + loss.lambda_rela * rela


# ------------------------------------------------------------------------------------------------------------ helpers
def is_const(x: torch.Tensor, value: float) -> bool:
    return x.numel() > 0 and torch.allclose(x, torch.full_like(x, value), rtol=1e-6, atol=0)


def random_boxes(g: torch.Generator, n_img: int, n_box: int, size: int) -> list[torch.Tensor]:
    out = []
    for _ in range(n_img):
        xy = torch.rand(n_box, 2, generator=g) * size * 0.8
        wh = torch.rand(n_box, 2, generator=g) * size * 0.5 + 2
        out.append(torch.cat([xy, (xy + wh).clamp(max=size - 0.5)], 1))
    return out


def pad(boxes: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    m = max(len(b) for b in boxes)
    out, valid = torch.zeros(len(boxes), m + 1, 4), torch.zeros(len(boxes), m + 1, dtype=torch.bool)
    for i, b in enumerate(boxes):
        out[i, : len(b)], valid[i, : len(b)] = b, True
    out[:, -1] = torch.tensor([3.0, 3.0, 40.0, 40.0])  # a padding row that must be ignored
    return out, valid


# ------------------------------------------------------------------------------------------------------------- masks
def test_clean_mask_geometry_by_hand():
    boxes = torch.tensor([[[16.0, 24.0, 48.0, 56.0]]])  # stride 8 → cols 2..6, rows 3..7: 5 × 5 cells
    fg = gaussian_foreground_mask(boxes, torch.tensor([[True]]), (16, 16), stride=8)[0]
    area = 1 / 25
    assert is_const(fg[3:8, 2:7], area)
    # ring: half-size (7 − 3) // 2 = 2 cells; along the centre row (cy = 5) to the right of the support
    sigma = 5 / 6
    for col in (7, 8):
        assert fg[5, col].item() == pytest.approx(area * math.exp(-0.5 * ((col - 4) / sigma) ** 2), rel=1e-5)
    assert area > fg[5, 7] > fg[5, 8] > 0 and fg[5, 9] == 0  # decays away from the box, zero outside the ring
    assert fg[1, 4] > 0 and fg[0, 4] == 0 and fg[10, 4] == 0  # rows 1..9 form the ring vertically
    assert fg[5, 1] == pytest.approx(fg[5, 7].item())  # clean ring is symmetric (rows ↔ cy, cols ↔ cx)
    bg = background_mask(fg[None])[0]
    assert bg.sum().item() == pytest.approx(1.0)
    ring = (fg > 0) & (fg < area)
    assert ring.any() and torch.all(bg[ring] == 0) and torch.all(bg[fg == 0] == 1 / (fg == 0).sum())


@pytest.mark.parametrize("seed", [0, 1])
def test_clean_mask_matches_a_pixel_loop(seed):
    g = torch.Generator().manual_seed(seed)
    boxes = random_boxes(g, 2, 3, 96)
    padded, valid = pad(boxes)
    for stride in (8, 16):
        size = (96 // stride, 96 // stride)
        got = gaussian_foreground_mask(padded, valid, size, stride)
        assert torch.allclose(got, loop_clean_mask(boxes, stride, *size), rtol=1e-5, atol=1e-9)


def test_faithful_mask_reproduces_the_documented_20x20_example():
    boxes = torch.tensor([[[5.0, 10.0, 10.0, 15.0]]]) * 8  # feature cols 5..10, rows 10..15 at stride 8
    fg = faithful_foreground_mask(boxes, torch.tensor([[True]]), (20, 20), stride=8)[0]
    assert is_const(fg[10:16, 5:11], 1 / 36)
    ring = fg[(fg > 0) & (fg < 1 / 36 - 1e-9)]
    assert ring.min() > 0.009 and ring.max() < 0.028 + 1e-4
    bg = background_mask(fg[None])[0]
    assert int((bg > 0).sum()) == 319 and bg.sum().item() == pytest.approx(1.0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_faithful_mask_matches_the_reference_loop(seed):
    g = torch.Generator().manual_seed(seed)
    boxes = random_boxes(g, 3, 4, 128)
    boxes[0][0] = torch.tensor([120.0, 0.0, 127.5, 127.5])  # touches the right and bottom edges
    padded, valid = pad(boxes)
    for stride in (8, 16, 32):
        h = w = 128 // stride
        ref_fg, ref_bg = reference_masks(boxes, (128, 128), h, w)
        fg = faithful_foreground_mask(padded, valid, (h, w), stride)
        assert torch.allclose(fg, ref_fg, rtol=1e-5, atol=1e-8)
        assert torch.allclose(background_mask(fg), ref_bg, atol=1e-7)


def test_faithful_mask_rejects_negative_coordinates_and_fgd_mask_is_binary_support():
    with pytest.raises(ValueError, match="negative"):
        faithful_foreground_mask(torch.tensor([[[-2.0, 0, 8, 8]]]), torch.tensor([[True]]), (4, 4), 4)
    fg = box_interior_mask(torch.tensor([[[0.0, 0.0, 8.0, 4.0]]]), torch.tensor([[True]]), (4, 4), 4)[0]
    assert is_const(fg[:2, :3], 1 / 6) and fg.sum().item() == pytest.approx(1.0)  # rows 0..1, cols 0..2


# ------------------------------------------------------------------------------------------------------------- losses
def make_inputs(seed: int, c_s: int = 6, c_t: int = 8, size: int = 64, stride: int = 8):
    g = torch.Generator().manual_seed(seed)
    boxes = random_boxes(g, 2, 3, size)
    padded, valid = pad(boxes)
    labels = torch.where(valid, 0, -1)
    h = size // stride
    s = torch.randn(2, c_s, h, h, generator=g, requires_grad=True)
    t = torch.randn(2, c_t, h, h, generator=g)
    batch = DetectionBatch(torch.zeros(2, 3, size, size), padded, labels)
    return s, t, batch, boxes, (size, size)


def bound(loss, c_s=6, c_t=8, stride=8):
    loss.bind(TapInfo(c_s, stride), TapInfo(c_t, stride))
    for p in loss.parameters():  # non-zero relation branch so every part of the formula is exercised
        torch.nn.init.normal_(p, std=0.2) if p.dim() > 1 else torch.nn.init.normal_(p, std=0.1)
    return loss


def outputs(s, t):
    return DetectionOutput(neck=[s]), DetectionOutput(neck=[t])


@pytest.mark.parametrize("seed", [0, 1])
def test_faithful_fsd_matches_the_reference_forward(seed):
    s, t, batch, boxes, shape = make_inputs(seed)
    loss = bound(FSDLoss(student_tap="neck.0", faithful=True, gamma_mask=0.01, lambda_rela=0.1))
    assert loss.relation.conv_mask_s is None  # the reference uses conv_mask_t for both sides
    fg, bg = reference_masks(boxes, shape, 8, 8)
    expected = reference_forward(loss, s, t, fg, bg, "fsd")
    assert loss(*outputs(s, t), batch).item() == pytest.approx(expected.item(), rel=1e-5)


def test_clean_fsd_matches_its_formula_and_weights():
    s, t, batch, boxes, _ = make_inputs(3)
    loss = bound(FSDLoss(student_tap="neck.0", alpha_fg=2.0, beta_bg=0.5, lambda_rela=0.1))
    assert loss.relation.conv_mask_s is not None
    fg = loop_clean_mask(boxes, 8, 8, 8)
    bg = background_mask(fg)
    expected = reference_forward(loss, s, t, fg, bg, "fsd-clean")
    assert loss(*outputs(s, t), batch).item() == pytest.approx(expected.item(), rel=1e-5)


def test_fgd_matches_the_reference_forward():
    s, t, batch, boxes, shape = make_inputs(4)
    loss = bound(FGDLoss(student_tap="neck.0", alpha_fg=0.3, beta_bg=0.2, gamma_mask=0.01, lambda_rela=0.1))
    fg = box_interior_mask(*pad(boxes), (8, 8), 8)
    ref_fg = torch.zeros(2, 8, 8)
    for i, bs in enumerate(boxes):  # FGD reference: box support takes the largest area, per box
        for x1, y1, x2, y2 in (bs / 8).tolist():
            hmin, hmax, wmin, wmax = math.floor(y1), math.ceil(y2), math.floor(x1), math.ceil(x2)
            area = 1 / ((hmax + 1 - hmin) * (wmax + 1 - wmin))
            ref_fg[i, hmin : hmax + 1, wmin : wmax + 1] = ref_fg[i, hmin : hmax + 1, wmin : wmax + 1].clamp(min=area)
    assert torch.allclose(fg, ref_fg)
    expected = reference_forward(loss, s, t, ref_fg, background_mask(ref_fg), "fgd")
    assert loss(*outputs(s, t), batch).item() == pytest.approx(expected.item(), rel=1e-5)


@pytest.mark.parametrize(
    "make", [lambda: FSDLoss(student_tap="neck.0"), lambda: FGDLoss(student_tap="neck.0")], ids=["fsd", "fgd"]
)
def test_zero_when_student_equals_teacher_and_gradients_reach_student_side(make):
    s, _, batch, _, _ = make_inputs(5, c_s=8, c_t=8)
    loss = make()
    loss.bind(TapInfo(8, 8), TapInfo(8, 8))
    assert loss(*outputs(s, s.detach().clone()), batch).abs().item() < 1e-6
    s2, t, batch, _, _ = make_inputs(6)
    loss = make()
    loss.bind(TapInfo(6, 8), TapInfo(8, 8))
    value = loss(*outputs(s2, t), batch)
    value.backward()
    assert value.item() > 0 and s2.grad.abs().sum() > 0 and loss.align.weight.grad.abs().sum() > 0
    assert loss.relation.conv_mask_t.weight.grad is not None


def test_configuration_errors_are_clear():
    with pytest.raises(ValueError, match="alpha_fg"):
        FSDLoss(faithful=True, alpha_fg=2.0)
    with pytest.raises(ValueError, match="stride"):
        FSDLoss(student_tap="neck.0", teacher_tap="neck.1").bind(TapInfo(8, 8), TapInfo(8, 16))
    loss = FSDLoss(student_tap="neck.0")
    loss.bind(TapInfo(4, 8), TapInfo(4, 8))
    with pytest.raises(ValueError, match="GT boxes"):
        loss(*outputs(torch.randn(1, 4, 2, 2), torch.randn(1, 4, 2, 2)), None)
