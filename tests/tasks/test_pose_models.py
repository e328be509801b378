"""Pose models: declared taps match real outputs, CAU blocks, attention exposure and the seed-003 size target."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from kd_suite.outputs import get_tap
from kd_suite.tasks.pose import CAU, HeatmapNet, RegressionPoseNet
from kd_suite.tasks.pose.cau import channel_shuffle


@pytest.fixture(autouse=True)
def one_thread():
    """The models here are small: one intra-op thread is faster than two on a shared CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def check_taps(model, image, skip=()):
    out = model(image)
    for tap, info in model.tap_info.items():
        if tap.split(".")[0] in skip:
            continue
        x = get_tap(out, tap)
        assert x.shape[1] == info.channels, tap
        if info.stride:
            assert image.shape[-1] // x.shape[-1] == info.stride and image.shape[-2] // x.shape[-2] == info.stride, tap
    return out


def test_heatmap_net_taps_decoding_and_aux_heads():
    torch.manual_seed(0)
    model = HeatmapNet("test_resnet", num_joints=5, deconv_channels=16, aux_heads=2).train()
    out = check_taps(model, torch.randn(2, 3, 64, 96), skip=("coords", "scores"))  # train: heatmaps + aux
    assert out.heatmaps.shape == (2, 5, 16, 24) and len(out.aux_heatmaps) == 2 and out.coords is None
    out = check_taps(model.eval(), torch.randn(2, 3, 64, 96), skip=("aux_heatmaps",))  # eval: decoded coords
    assert out.coords.shape == (2, 5, 2) and out.scores.shape == (2, 5) and not out.aux_heatmaps
    assert ((out.coords >= 0) & (out.coords <= 1)).all()
    peak = out.heatmaps.flatten(2).amax(-1).clamp(1e-4, 1 - 1e-4)
    torch.testing.assert_close(torch.sigmoid(out.scores), peak)  # scores are logits of the heatmap peak
    with pytest.raises(ValueError, match="aux_heads"):
        HeatmapNet("test_resnet", 5, aux_heads=3)


def test_heatmap_net_dilated_backbone_keeps_heatmap_stride():
    model = HeatmapNet("resnet18", num_joints=4, deconv_channels=8, num_deconv=1, output_stride=8).eval()
    assert model.stride == 4 and model.backbone.strides[-1] == 8
    out = check_taps(model, torch.randn(1, 3, 64, 64), skip=("coords", "scores"))
    assert out.heatmaps.shape == (1, 4, 16, 16) and out.features[-1].shape[-1] == 8  # 8×8 deepest map, not 2×2
    with pytest.raises(ValueError, match="not divisible"):
        HeatmapNet("resnet18", 4, num_deconv=4, output_stride=8)


def test_regression_student_outputs_and_attention_blocks():
    torch.manual_seed(0)
    model = RegressionPoseNet(7, (64, 48), stem_channels=16, stage_channels=32, num_blocks=2, dim=32, depth=3, heads=4)
    out = check_taps(model.eval(), torch.randn(2, 3, 64, 48))
    assert out.coords.shape == (2, 7, 2) and out.sigmas.shape == (2, 7, 2) and out.scores.shape == (2, 7)
    assert ((out.coords > 0) & (out.coords < 1)).all() and (out.sigmas > 0).all()
    assert len(out.attentions) == 3 and out.attentions[0].shape == (2, 4, 7, 16)  # 16×12 features / (4, 3) patches
    assert (out.attentions[-1].sum(-1) < 1).all()  # the keypoint → visual block of rows that also cover K tokens
    with pytest.raises(ValueError, match="built for"):
        model(torch.randn(1, 3, 64, 64))
    with pytest.raises(ValueError, match="not divisible by patch"):
        RegressionPoseNet(7, (64, 48), patch_size=(5, 3))


def test_cau_block_and_channel_shuffle():
    x = torch.arange(2 * 8 * 2 * 2, dtype=torch.float32).reshape(2, 8, 2, 2)
    y = channel_shuffle(x, groups=2)
    order = [0, 4, 1, 5, 2, 6, 3, 7]  # groups (0..3) and (4..7) interleaved
    assert torch.equal(y, x[:, order])
    block = CAU(16, 32, groups=4).eval()
    assert block(torch.randn(2, 16, 8, 8)).shape == (2, 32, 8, 8)
    assert block.reduce[0][0].groups == 4 and block.dw[0].groups == 8 and block.expand[0].groups == 4
    with pytest.raises(ValueError, match="divisible by groups"):
        CAU(6, 32, groups=4)


def test_student_size_target_at_256x192():
    """Wei & Hu (PRL 2024) (PRL 2024): ≤ 4.3 M params and ≤ 2.2 GFLOPs; FLOPs = 2 × MACs, attention matmuls counted."""
    model = RegressionPoseNet(num_joints=14, input_size=(256, 192)).eval()  # defaults: CAU stem, depth 5
    params = sum(p.numel() for p in model.parameters())
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, 3, 256, 192))
    flops = counter.get_total_flops()
    assert params <= 4.3e6, params
    assert flops <= 2.2e9, flops
    by_op = {str(k): v for k, v in counter.get_flop_counts()["Global"].items()}
    n_tokens, dim, depth = 14 + 256, 192, 5
    attention = depth * 2 * (2 * n_tokens * n_tokens * dim)  # QKᵀ and AV, 2 FLOPs per MAC, all heads
    assert by_op.get("aten.bmm", 0) == attention  # the einsum-like attention matmuls are in the count
    stem = 2 * (3 * 9 * 64 * 128 * 96 + 64 * 9 * 64 * 64 * 48)  # the two strided 3×3 convolutions
    assert stem < by_op["aten.convolution"] < stem + 2 * 0.16e9  # + the CAU stage (group/depthwise convs, SE)
