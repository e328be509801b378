"""YOLOX detector: preset sizes against the official table, taps, BN settings, decoding and NMS."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from kd_suite.outputs import DetectionOutput, get_tap
from kd_suite.tasks.detection import PRESETS, YOLOX
from kd_suite.tasks.detection.decode import decode_boxes, grid_priors, postprocess, unletterbox


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny forwards gain nothing from a second thread, and a shared CPU makes two threads several times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


#: official YOLOX README, millions of parameters with 80 classes
OFFICIAL_PARAMS_M = {"nano": 0.91, "tiny": 5.06, "s": 9.0, "m": 25.3, "l": 54.2}


@pytest.mark.parametrize("variant", sorted(OFFICIAL_PARAMS_M))
def test_preset_parameter_counts_match_the_official_table(variant):
    params = sum(p.numel() for p in YOLOX(80, variant).parameters()) / 1e6
    assert abs(params - OFFICIAL_PARAMS_M[variant]) / OFFICIAL_PARAMS_M[variant] < 0.01, params


def tiny_model(num_classes: int = 3) -> YOLOX:
    return YOLOX(num_classes, "s", depth=0.33, width=0.125)


def test_taps_match_forward_shapes_and_strides():
    model = tiny_model().eval()
    out = model(torch.randn(2, 3, 64, 96))
    assert len(out.neck) == len(out.features) == len(out.cls) == 3
    for name, info in model.tap_info.items():
        t = get_tap(out, name)
        assert t.shape[1] == info.channels, name
        assert (64 // t.shape[2], 96 // t.shape[3]) == (info.stride, info.stride), name
    assert model.tap_info["neck.0"].channels == int(256 * 0.125)  # head stems: 256·width
    assert [model.tap_info[f"features.{i}"].channels for i in range(3)] == [32, 64, 128]


def test_nano_is_depthwise_and_blocks_use_yolox_bn_and_silu():
    nano = YOLOX(80, "nano")
    grouped = [m for m in nano.modules() if isinstance(m, nn.Conv2d) and m.groups > 1]
    assert grouped and all(m.groups == m.in_channels for m in grouped)
    assert not [m for m in YOLOX(80, "tiny").modules() if isinstance(m, nn.Conv2d) and m.groups > 1]
    bns = [m for m in nano.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns and all(m.eps == 1e-3 and m.momentum == 0.03 for m in bns)
    assert any(isinstance(m, nn.SiLU) for m in nano.modules())
    assert not any(isinstance(m, (nn.ReLU, nn.LeakyReLU)) for m in nano.modules())


def test_prediction_biases_start_at_the_prior():
    model = tiny_model()
    prior = 1 / (1 + math.exp(-model.head.cls_preds[0].bias[0].item()))
    assert prior == pytest.approx(0.01, rel=1e-4)
    assert model.head.obj_preds[2].bias.sigmoid().item() == pytest.approx(0.01, rel=1e-4)


def test_depth_and_width_override_the_preset():
    assert PRESETS["l"] == (1.0, 1.0, False)
    custom = YOLOX(2, "l", depth=0.33, width=0.125)
    assert custom.tap_info["neck.1"].channels == 32
    assert sum(p.numel() for p in custom.parameters()) == sum(p.numel() for p in tiny_model(2).parameters())


def test_bad_input_size_and_variant_are_clear_errors():
    with pytest.raises(ValueError, match="multiples of 32"):
        tiny_model()(torch.randn(1, 3, 48, 64))
    with pytest.raises(ValueError, match="variant"):
        YOLOX(2, "xl")  # type: ignore[arg-type]


def test_grid_priors_and_box_decoding_by_hand():
    priors = grid_priors([(2, 3), (1, 1)], [8, 16], torch.device("cpu"))
    assert priors.tolist()[:4] == [[0, 0, 8], [1, 0, 8], [2, 0, 8], [0, 1, 8]]
    assert priors.tolist()[-1] == [0, 0, 16]
    reg = torch.zeros(1, 7, 4)
    reg[0, 5] = torch.tensor([0.5, 0.25, math.log(2.0), 0.0])  # cell (col 2, row 1) at stride 8
    box = decode_boxes(reg, priors)[0, 5]
    assert box.tolist() == pytest.approx([(2 + 0.5) * 8, (1 + 0.25) * 8, 16.0, 8.0])


def _single_level_output(scores: dict[tuple[int, int], tuple[int, float]], size: int = 4) -> DetectionOutput:
    """One stride-8 level whose cells (row, col) → (class, logit) fire with box (w, h) = (16, 16) at the cell."""
    cls = torch.full((1, 2, size, size), -20.0)
    obj = torch.full((1, 1, size, size), -20.0)
    reg = torch.zeros(1, 4, size, size)
    reg[:, 2:] = math.log(2.0)
    for (r, c), (k, logit) in scores.items():
        cls[0, k, r, c], obj[0, 0, r, c] = logit, 20.0
    return DetectionOutput(cls=[cls], reg=[reg], obj=[obj])


def test_postprocess_scores_thresholds_and_classwise_nms():
    # cells (1, 1) and (1, 2) decode to boxes [0, 0, 16, 16] and [8, 0, 24, 16] (centre = cell · stride): IoU 1/3
    same = _single_level_output({(1, 1): (0, 3.0), (1, 2): (0, 2.0)})
    kept = postprocess(same, [8], score_thresh=0.01, nms_thresh=0.3)[0]
    assert kept["labels"].tolist() == [0]  # IoU 1/3 > 0.3 suppresses the weaker box
    assert kept["boxes"][0].tolist() == pytest.approx([0.0, 0.0, 16.0, 16.0])
    assert kept["scores"][0].item() == pytest.approx(torch.sigmoid(torch.tensor(3.0)).item(), rel=1e-6)
    assert len(postprocess(same, [8], nms_thresh=0.5)[0]["scores"]) == 2  # 1/3 < 0.5: both stay
    mixed = _single_level_output({(1, 1): (0, 3.0), (1, 2): (1, 2.0)})
    assert postprocess(mixed, [8], nms_thresh=0.3)[0]["labels"].tolist() == [0, 1]  # NMS is class-wise
    assert len(postprocess(mixed, [8], score_thresh=0.9)[0]["scores"]) == 1  # σ(2) = 0.88 < 0.9


def test_postprocess_keeps_at_most_max_det():
    out = _single_level_output({(r, c): (0, 1.0 + r + c) for r in range(4) for c in range(4)}, size=4)
    assert len(postprocess(out, [8], nms_thresh=1.0, max_det=5)[0]["scores"]) == 5


def test_unletterbox_inverts_resize_and_pad_and_clips():
    boxes = torch.tensor([[10.0, 20.0, 60.0, 45.0], [0.0, 0.0, 200.0, 200.0]])
    out = unletterbox(boxes, 0.5, (10, 20), (100, 200))
    assert out[0].tolist() == pytest.approx([0.0, 0.0, 100.0, 50.0])
    assert out[1].tolist() == pytest.approx([0.0, 0.0, 200.0, 100.0])  # clipped to (w, h) = (200, 100)
    # the typed batch fields of one image: scale (), pad (2,) float32, orig_size (2,) int64
    typed = unletterbox(boxes, torch.tensor(0.5), torch.tensor([10.0, 20.0]), torch.tensor([100, 200]))
    torch.testing.assert_close(typed, out)
