"""SimOTA assignment and the YOLOX loss: hand cases and independent loop implementations."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from kd_suite.outputs import DetectionOutput
from kd_suite.tasks.detection.assigner import simota_assign
from kd_suite.tasks.detection.decode import grid_priors
from kd_suite.tasks.detection.losses import iou_loss, yolox_loss


def loop_simota(cls, obj, pred, priors, gt, labels, radius=2.5):
    """SimOTA written out location by location and GT by GT (YOLOX / mmdet rule)."""
    num_loc, num_cls = cls.shape
    cand, both = [], {}
    for a in range(num_loc):
        col, row, s = priors[a].tolist()
        cx, cy = (col + 0.5) * s, (row + 0.5) * s
        flags = []
        for g in range(len(gt)):
            x1, y1, x2, y2 = gt[g].tolist()
            in_box = x1 < cx < x2 and y1 < cy < y2
            gx, gy = (x1 + x2) / 2, (y1 + y2) / 2
            in_ctr = abs(cx - gx) < radius * s and abs(cy - gy) < radius * s
            flags.append((in_box, in_ctr))
        if any(b or c for b, c in flags):
            cand.append(a)
            both[a] = [b and c for b, c in flags]
    cost, ious = {}, {}
    for g in range(len(gt)):
        for a in cand:
            x1, y1, x2, y2 = pred[a].tolist()
            gx1, gy1, gx2, gy2 = gt[g].tolist()
            inter = max(0.0, min(x2, gx2) - max(x1, gx1)) * max(0.0, min(y2, gy2) - max(y1, gy1))
            iou = inter / ((x2 - x1) * (y2 - y1) + (gx2 - gx1) * (gy2 - gy1) - inter)
            probs = (torch.sigmoid(cls[a].double()) * torch.sigmoid(obj[a].double())).sqrt().tolist()
            bce = sum(-math.log(q if k == labels[g] else 1 - q) for k, q in enumerate(probs))
            ious[g, a] = iou
            cost[g, a] = bce + 3 * -math.log(iou + 1e-8) + (0 if both[a][g] else 1e5)
    chosen = {}
    for g in range(len(gt)):
        top = sorted((ious[g, a] for a in cand), reverse=True)[:10]
        k = max(1, int(sum(top)))
        for a in sorted(cand, key=lambda a: cost[g, a])[:k]:
            chosen.setdefault(a, []).append(g)
    result = {}
    for a, gs in chosen.items():
        result[a] = gs[0] if len(gs) == 1 else min(range(len(gt)), key=lambda g: cost[g, a])
    return result, ious, {a: len(gs) for a, gs in chosen.items()}


def test_simota_hand_case_picks_the_exact_box():
    # 4×4 grid, stride 8; GT [0, 0, 16, 16]: cells with centres 4 and 12 are inside the box (4 cells), the centre
    # region |c − 8| < 20 covers centres 4, 12, 20 (9 cells); only the cell (row 1, col 1) predicts the GT exactly
    priors = grid_priors([(4, 4)], [8], torch.device("cpu"))
    pred = torch.tensor([[100.0, 100.0, 101.0, 101.0]]).repeat(16, 1)  # far away: IoU 0
    pred[5] = torch.tensor([0.0, 0.0, 16.0, 16.0])  # cell index 5 = (row 1, col 1)
    pred[4] = torch.tensor([0.0, 0.0, 16.0, 8.0])  # IoU 0.5
    res = simota_assign(torch.zeros(16, 2), torch.zeros(16), pred, priors, torch.tensor([[0.0, 0, 16, 16]]),
                        torch.tensor([1]))  # fmt: skip
    # top IoUs 1 + 0.5 → k = 1: the single positive is the exact prediction
    assert res.fg.nonzero()[:, 0].tolist() == [5]
    assert res.gt_index.tolist() == [0] and res.iou.tolist() == pytest.approx([1.0])


def test_simota_shared_location_goes_to_the_cheaper_gt():
    priors = grid_priors([(4, 4)], [8], torch.device("cpu"))
    pred = torch.tensor([[100.0, 100.0, 101.0, 101.0]]).repeat(16, 1)
    pred[5] = torch.tensor([0.0, 0.0, 16.0, 16.0])
    gt = torch.tensor([[0.0, 0.0, 16.0, 16.0], [0.0, 0.0, 16.0, 14.0]])  # both prefer location 5
    res = simota_assign(torch.zeros(16, 2), torch.zeros(16), pred, priors, gt, torch.tensor([0, 1]))
    assert res.fg.nonzero()[:, 0].tolist() == [5] and res.gt_index.tolist() == [0]  # IoU 1 beats IoU 0.875


def test_simota_no_gt_and_no_candidate():
    priors = grid_priors([(2, 2)], [8], torch.device("cpu"))
    res = simota_assign(torch.zeros(4, 3), torch.zeros(4), torch.rand(4, 4), priors, torch.zeros(0, 4),
                        torch.zeros(0, dtype=torch.long))  # fmt: skip
    assert not res.fg.any() and res.gt_index.numel() == 0
    far = simota_assign(torch.zeros(4, 3), torch.zeros(4), torch.rand(4, 4), priors,
                        torch.tensor([[500.0, 500.0, 510.0, 510.0]]), torch.tensor([0]), center_radius=1.0)  # fmt: skip
    assert not far.fg.any()


@pytest.mark.parametrize(("seed", "crowded"), [(0, False), (1, False), (2, True), (3, True)])
def test_simota_matches_a_loop_implementation(seed, crowded):
    g = torch.Generator().manual_seed(seed)
    priors = grid_priors([(8, 8), (4, 4)], [8, 16], torch.device("cpu"))
    n = len(priors)
    if crowded:  # three near-identical GTs and predictions all around them: large k, locations claimed twice
        gt = torch.tensor([20.0, 20.0, 44.0, 44.0]) + torch.randn(3, 4, generator=g)
        pred = torch.tensor([20.0, 20.0, 44.0, 44.0]) + 3 * torch.randn(n, 4, generator=g)
    else:
        xy = torch.rand(n, 2, generator=g) * 64
        pred = torch.cat([xy, xy + torch.rand(n, 2, generator=g) * 30 + 2], 1)
        gt_xy = torch.rand(3, 2, generator=g) * 40
        gt = torch.cat([gt_xy, gt_xy + torch.rand(3, 2, generator=g) * 24 + 4], 1)
    labels = torch.randint(0, 4, (3,), generator=g)
    cls, obj = torch.randn(n, 4, generator=g), torch.randn(n, generator=g)
    res = simota_assign(cls, obj, pred, priors, gt, labels)
    expected, ious, claims = loop_simota(cls, obj, pred, priors, gt, labels)
    assert not crowded or max(claims.values()) > 1  # the conflict rule is exercised
    positives = res.fg.nonzero()[:, 0].tolist()
    assert positives == sorted(expected)
    assert res.gt_index.tolist() == [expected[a] for a in positives]
    assert res.iou.tolist() == pytest.approx([ious[expected[a], a] for a in positives], abs=1e-5)


def test_iou_loss_by_hand():
    pred = torch.tensor([[5.0, 5.0, 10.0, 10.0], [0.0, 0.0, 2.0, 2.0]])
    target = torch.tensor([[10.0, 5.0, 10.0, 10.0], [10.0, 10.0, 2.0, 2.0]])  # IoU 50/150 and 0
    assert iou_loss(pred, target).tolist() == pytest.approx([1 - 1 / 9, 1.0])


def _random_output(seed: int, num_classes: int = 3) -> DetectionOutput:
    g = torch.Generator().manual_seed(seed)
    sizes = [(8, 8), (4, 4), (2, 2)]
    return DetectionOutput(
        cls=[torch.randn(2, num_classes, *s, generator=g, requires_grad=True) for s in sizes],
        reg=[(torch.randn(2, 4, *s, generator=g) * 0.3).requires_grad_() for s in sizes],
        obj=[torch.randn(2, 1, *s, generator=g, requires_grad=True) for s in sizes],
    )


def test_yolox_loss_matches_per_image_formulas():
    out = _random_output(0)
    boxes = torch.tensor([[[4.0, 6.0, 30.0, 40.0], [20.0, 10.0, 60.0, 50.0]], [[10.0, 10.0, 50.0, 30.0], [0, 0, 0, 0]]])
    labels = torch.tensor([[0, 2], [1, -1]])
    terms = yolox_loss(out, boxes, labels, [8, 16, 32], use_l1=True)
    assert set(terms) == {"iou", "obj", "cls", "l1"}
    priors = grid_priors([(8, 8), (4, 4), (2, 2)], [8, 16, 32], torch.device("cpu"))
    iou_sum = obj_sum = cls_sum = l1_sum = 0.0
    num_fg = 0
    for b in range(2):
        cls = torch.cat([c[b].flatten(1) for c in out.cls], 1).T.detach()  # (A, K)
        reg = torch.cat([r[b].flatten(1) for r in out.reg], 1).T.detach()
        obj = torch.cat([o[b].flatten(1) for o in out.obj], 1)[0].detach()
        s = priors[:, 2:]
        centre, size = (reg[:, :2] + priors[:, :2]) * s, reg[:, 2:].exp() * s
        pred = torch.cat([centre - size / 2, centre + size / 2], 1)
        valid = labels[b] >= 0
        res = simota_assign(cls, obj, pred, priors, boxes[b][valid], labels[b][valid])
        num_fg += int(res.fg.sum())
        obj_sum += F.binary_cross_entropy_with_logits(obj, res.fg.float(), reduction="sum").item()
        for a, gi, iou in zip(res.fg.nonzero()[:, 0].tolist(), res.gt_index.tolist(), res.iou.tolist()):
            x1, y1, x2, y2 = boxes[b][gi].tolist()
            target = torch.tensor([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1])
            iou_sum += iou_loss(torch.cat([centre[a], size[a]])[None], target[None]).item()
            onehot = torch.zeros(3)
            onehot[labels[b][gi]] = iou
            cls_sum += F.binary_cross_entropy_with_logits(cls[a], onehot, reduction="sum").item()
            stride = priors[a, 2].item()
            t = [target[0] / stride - priors[a, 0], target[1] / stride - priors[a, 1],
                 math.log(target[2] / stride + 1e-8), math.log(target[3] / stride + 1e-8)]  # fmt: skip
            l1_sum += sum(abs(reg[a, j].item() - float(t[j])) for j in range(4))
    assert num_fg > 0
    assert terms["iou"].item() == pytest.approx(5.0 * iou_sum / num_fg, rel=1e-5)
    assert terms["obj"].item() == pytest.approx(obj_sum / num_fg, rel=1e-5)
    assert terms["cls"].item() == pytest.approx(cls_sum / num_fg, rel=1e-5)
    assert terms["l1"].item() == pytest.approx(l1_sum / num_fg, rel=1e-5)
    sum(terms.values()).backward()
    assert all(t.grad.abs().sum() > 0 for t in out.obj)  # objectness is trained everywhere
    assert sum(t.grad.abs().sum() for t in out.cls) > 0 and sum(t.grad.abs().sum() for t in out.reg) > 0


def test_yolox_loss_without_gt_is_objectness_only():
    out = _random_output(1)
    terms = yolox_loss(out, torch.zeros(2, 1, 4), torch.full((2, 1), -1), [8, 16, 32])
    assert "l1" not in terms and terms["iou"].item() == 0.0 and terms["cls"].item() == 0.0
    obj = torch.cat([o.flatten() for o in out.obj])
    expected = F.binary_cross_entropy_with_logits(obj, torch.zeros_like(obj), reduction="sum")  # ÷ max(1, 0)
    assert terms["obj"].item() == pytest.approx(expected.item(), rel=1e-5)
