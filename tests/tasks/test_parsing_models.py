"""Parsing models: every declared tap matches the tensor produced, the decoder follows its formulas, R18 size."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from kd_suite.models.backbone import Backbone
from kd_suite.outputs import TapInfo, get_tap
from kd_suite.tasks.parsing import LSFA, SPPM, ParsingNet, PSPParsingNet

SIZE = 64


def _check_taps(model: torch.nn.Module, train: bool) -> None:
    model.train(train)
    out = model(torch.randn(2, 3, SIZE, SIZE))
    for tap, info in model.tap_info.items():
        if tap.startswith("aux_logits") and not train:
            with pytest.raises(KeyError):
                get_tap(out, tap)  # deep supervision only in training
            continue
        x = get_tap(out, tap)
        assert x.shape == (2, info.channels, SIZE // info.stride, SIZE // info.stride), tap
    heads = sum(t.startswith("aux_logits.") and not t.startswith("aux_logits.-") for t in model.tap_info)
    assert len(out.aux_logits) == (heads if train else 0)


@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize(
    "kwargs",
    [{}, {"spatial_stats": ("mean",), "separable": True}, {"fusion_channels": (8, 12, 16), "aux_heads": False}],
)
def test_student_taps_match_outputs(kwargs, train):
    model = ParsingNet("test_resnet", num_classes=20, context_channels=16, head_channels=8, **kwargs)
    assert model.tap_info["logits"] == TapInfo(20, 8)
    assert ("aux_logits.1" in model.tap_info) == kwargs.get("aux_heads", True)
    _check_taps(model, train)


@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize(("output_stride", "decoder_level"), [(8, None), (16, 1), (None, None)])
def test_teacher_taps_match_outputs(output_stride, decoder_level, train):
    model = PSPParsingNet(
        "test_resnet", num_classes=7, output_stride=output_stride, decoder_level=decoder_level, psp_channels=16,
        decoder_channels=12, skip_channels=4, head_channels=8,
    )  # fmt: skip
    expected = 4 if decoder_level == 1 else (output_stride or 32)
    assert model.tap_info["logits"].stride == expected
    _check_taps(model, train)


def test_backbone_reads_feature_info_and_passes_pretrained(monkeypatch):
    calls = []
    import timm

    real = timm.create_model
    monkeypatch.setattr(timm, "create_model", lambda name, **kw: calls.append((name, kw)) or real(name, **kw))
    b = Backbone("test_resnet", pretrained=False, output_stride=8)
    assert calls == [("test_resnet", {"features_only": True, "pretrained": False, "output_stride": 8})]
    assert b.strides == [2, 4, 8, 8, 8] and b.channels == [32, 32, 48, 192, 96]
    assert b.level_taps()[-1] == TapInfo(96, 8)


def test_student_rejects_flat_backbones():
    with pytest.raises(ValueError, match="increasing strides"):
        ParsingNet("test_vit")


def test_lsfa_computes_the_spatial_attention_fusion():
    torch.manual_seed(0)
    m = LSFA(6, 5, 4).eval()
    x, y = torch.randn(2, 6, 8, 8), torch.randn(2, 5, 4, 4)
    xp = m.conv_x(x)
    yp = F.interpolate(y, size=(8, 8), mode="bilinear", align_corners=False)
    stats = [xp.mean(1, keepdim=True), xp.max(1, keepdim=True).values, yp.mean(1, keepdim=True), yp.amax(1, True)]
    alpha = torch.sigmoid(m.attention(torch.cat(stats, 1)))
    torch.testing.assert_close(m(x, y), m.conv_out(xp * alpha + yp * (1 - alpha)))
    assert m.attention[0][0].in_channels == 4 and m.attention[1][0].out_channels == 1
    assert LSFA(6, 5, 4, spatial_stats=("mean",)).attention[0][0].in_channels == 2
    with pytest.raises(ValueError, match="spatial_stats"):
        LSFA(6, 5, 4, spatial_stats=("median",))


def test_sppm_sums_upsampled_branches():
    torch.manual_seed(0)
    m = SPPM(6, 5, 3, bins=(1, 2, 4)).eval()
    x = torch.randn(1, 6, 8, 8)
    total = sum(
        F.interpolate(b(F.adaptive_avg_pool2d(x, s)), size=(8, 8), mode="bilinear", align_corners=False)
        for s, b in zip((1, 2, 4), m.branches)
    )
    torch.testing.assert_close(m(x), m.out(total))
    assert [b[0].in_channels for b in m.branches] == [6, 6, 6] and m.out[0].in_channels == 5  # summed, not concat


def _conv_bn(c_in: int, c_out: int, k: int) -> int:
    return k * k * c_in * c_out + 2 * c_out  # conv without bias + BN affine


def test_resnet18_student_parameter_count():
    model = ParsingNet("resnet18", num_classes=20)
    backbone = sum(p.numel() for p in model.backbone.parameters())
    assert backbone == 11_176_512  # timm resnet18 without its classifier (11.69 M − 0.51 M fc)
    sppm = 3 * _conv_bn(512, 128, 1) + _conv_bn(128, 128, 3)
    attention = _conv_bn(4, 2, 3) + _conv_bn(2, 1, 3)
    lsfa = [(512, 128, 128), (256, 128, 96), (128, 96, 64)]  # (x, y, out) channels at 1/32, 1/16, 1/8
    fusions = sum(_conv_bn(x, y, 3) + attention + _conv_bn(y, o, 3) for x, y, o in lsfa)
    heads = sum(_conv_bn(c, 64, 3) + 64 * 20 for c in (64, 96, 128))  # main + two aux heads
    decoder = sum(p.numel() for n, p in model.named_parameters() if not n.startswith("backbone."))
    assert decoder == sppm + fusions + heads
    total = backbone + decoder
    assert 12.5e6 < total < 13.5e6
