"""Exact rewrites of frozen modules (teacher fast path): each rewritten module equals the module it replaces."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from kd_suite.fast_teacher import TeacherFastPath
from kd_suite.models.fold_bn import fold_batchnorm
from kd_suite.models.frozen_rewrites import GemmConvTranspose2d, rewrite_frozen
from kd_suite.tasks.parsing import PSPParsingNet
from kd_suite.tasks.parsing.psp_frozen import FrozenPSP, interpolation_taps
from kd_suite.tasks.parsing.sppm import PSPModule

from .test_fast_teacher import randomise_bn

RTOL = 1e-5


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / a.abs().max())


@pytest.mark.parametrize("s,n", [(1, 7), (2, 9), (3, 13), (6, 6), (6, 20)])
def test_interpolation_taps_reproduce_shifted_bilinear_upsampling(s, n):
    g = torch.Generator().manual_seed(s)
    b = torch.randn(1, 1, s, 1, generator=g)
    up = F.interpolate(b, size=(n, 1), mode="bilinear", align_corners=False)[0, 0, :, 0]  # (n,)
    taps = interpolation_taps(s, n, k=3, dilation=1, padding=1, like=b)  # (3, n, s)
    padded = F.pad(up, (1, 1))  # the convolution's zero padding
    for d in range(3):
        assert torch.allclose(taps[d] @ b[0, 0, :, 0], padded[d : d + n], atol=1e-6)


@pytest.mark.parametrize("fold", [True, False])
@pytest.mark.parametrize("bins,size", [((1, 2, 3, 6), (13, 9)), ((1, 3), (8, 8)), ((2, 6), (5, 17))])
def test_frozen_psp_equals_the_psp_module(fold, bins, size):
    torch.manual_seed(0)
    psp = randomise_bn(PSPModule(24, 8, 16, bins)).eval()
    if fold:
        fold_batchnorm(psp)
    x = torch.randn(2, 24, *size)
    with torch.no_grad():
        reference = psp(x)
        out = psp.frozen_form()(x)
    assert isinstance(psp.frozen_form(), FrozenPSP)
    assert out.shape == reference.shape and rel(reference, out) <= RTOL


def test_psp_in_training_mode_is_not_rewritten():
    psp = PSPModule(8, 4, 8).train()
    assert psp.frozen_form() is psp


@pytest.mark.parametrize("k,stride,pad,bias", [(4, 2, 1, False), (4, 2, 1, True), (3, 1, 1, True), (2, 2, 0, True)])
@pytest.mark.parametrize("channels_last", [False, True])
def test_gemm_conv_transpose_equals_conv_transpose(k, stride, pad, bias, channels_last):
    torch.manual_seed(0)
    deconv = nn.ConvTranspose2d(32, 8, k, stride=stride, padding=pad, bias=bias).eval()
    x = torch.randn(2, 32, 5, 7)
    if channels_last:
        deconv, x = deconv.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        reference = deconv(x)
        out = GemmConvTranspose2d(deconv)(x)
    assert out.shape == reference.shape and rel(reference, out) <= RTOL
    assert out.is_contiguous(memory_format=torch.channels_last) == channels_last


def test_rewrite_picks_only_channel_reducing_deconvolutions():
    model = nn.Sequential(
        nn.ConvTranspose2d(64, 8, 4, 2, 1),
        nn.ReLU(),
        nn.ConvTranspose2d(8, 8, 4, 2, 1),
        nn.ConvTranspose2d(8, 8, 4, 2, 1, groups=2),
    ).eval()
    x = torch.randn(1, 64, 3, 4)
    with torch.no_grad():
        reference = model(x)
        fast = copy.deepcopy(model)
        assert rewrite_frozen(fast) == ["0"]
        assert isinstance(fast[0], GemmConvTranspose2d) and type(fast[2]) is nn.ConvTranspose2d
        assert rel(reference, fast(x)) <= RTOL


def test_the_fast_path_rewrites_a_psp_teacher_and_keeps_its_outputs():
    torch.manual_seed(0)
    teacher = randomise_bn(PSPParsingNet("test_resnet", num_classes=5, output_stride=8, psp_channels=16))
    teacher = teacher.requires_grad_(False).eval()
    image = torch.randn(2, 3, 64, 48)
    with torch.no_grad():
        reference = teacher(image)
    fast = TeacherFastPath()
    out = fast.forward(teacher, image)
    assert fast.rewrites() == [["psp"]] and fast.layouts() == ["channels_last"]
    assert rel(reference.logits, out.logits) <= 1e-4 and rel(reference.embedding, out.embedding) <= 1e-4
    assert isinstance(teacher.psp, PSPModule)  # the teacher itself is untouched
