"""FrozenPSP: PSP pooling computed without convolving the upsampled branches (a frozen teacher's exact fast form).

PSPModule (Zhao et al., CVPR 2017) ends in a k×k convolution over ``cat[x, up(b_1), …, up(b_n)]``, where each ``b_s``
is an ``s×s`` pooled branch and ``up`` is bilinear upsampling. With 2048 input and 4·512 branch channels at 1/8
resolution that convolution is the largest layer of a PSP-R50 parser (40 % of its forward), and half of it convolves
the upsampled branches, which carry only ``s×s`` numbers each. The convolution is linear, so it splits by input
channels: ``conv(x; W_x) + Σ_s conv(up(b_s); W_s)``. Bilinear upsampling is ``U = A_h · b · A_wᵀ`` with fixed
interpolation matrices ``A`` (H×s), and a tap ``(dy, dx)`` of the convolution reads ``U`` shifted, which is ``A`` with
shifted, zero-filled rows. So each branch term is

    Σ_{dy,dx} A_h^(dy) · (W_s[:, :, dy, dx] · b_s) · A_w^(dx)ᵀ

— a channel mix at ``s×s`` and two small matrix products per tap, instead of a full k×k convolution at H×W. The
result equals the plain module up to float rounding (``tests/test_frozen_rewrites.py``).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["FrozenPSP", "interpolation_taps"]


def interpolation_taps(s: int, n: int, k: int, dilation: int, padding: int, like: Tensor) -> Tensor:
    """Bilinear (align_corners=False) ``s → n`` interpolation matrices, one per kernel row, shifted as the tap reads.

    Returns ``(k, n, s)``: entry ``[d, i, p]`` is the weight of source ``p`` at output ``i + d·dilation − padding``
    (0 outside ``[0, n)``: the convolution's zero padding). The weights come from ``F.interpolate`` itself.
    """
    eye = torch.eye(s, dtype=like.dtype, device=like.device).view(1, s, s, 1)  # channel p = one-hot source p
    a = F.interpolate(eye, size=(n, 1), mode="bilinear", align_corners=False)[0, :, :, 0].t()  # (n, s)
    padded = F.pad(a, (0, 0, padding, padding))  # (n + 2·padding, s)
    return torch.stack([padded[d * dilation : d * dilation + n] for d in range(k)])  # (k, n, s)


class FrozenPSP(nn.Module):
    """A frozen :class:`~kd_suite.tasks.parsing.sppm.PSPModule` with its bottleneck split by input channels.

    Args:
        psp: the (BN-folded or not) eval-mode module; its bottleneck must start with a stride-1, groups-1,
            "same"-padded convolution (:meth:`PSPModule.frozen_form` checks this).
    """

    def __init__(self, psp: nn.Module) -> None:
        super().__init__()
        conv, *rest = list(psp.bottleneck)
        c_x = conv.in_channels - sum(b[0].out_channels for b in psp.branches)
        self.bins = tuple(psp.bins)
        self.branches = copy.deepcopy(psp.branches)
        self.main = nn.Conv2d(c_x, conv.out_channels, conv.kernel_size, padding=conv.padding, dilation=conv.dilation)
        with torch.no_grad():
            self.main.weight.copy_(conv.weight[:, :c_x])
            if conv.bias is not None:
                self.main.bias.copy_(conv.bias)
            else:
                self.main.bias.zero_()
        self.rest = nn.Sequential(*copy.deepcopy(rest))  # BN (if not folded) and ReLU
        k, o = conv.kernel_size[0], conv.out_channels
        start, mixes = c_x, []
        for b in psp.branches:
            c = b[0].out_channels
            w = conv.weight.detach()[:, start : start + c]  # (O, C_b, k, k)
            mixes.append(w.permute(2, 3, 0, 1).reshape(k * k * o, c).contiguous())  # rows ordered (dy, dx, o)
            start += c
        for i, m in enumerate(mixes):
            self.register_buffer(f"mix{i}", m)
        self.k, self.dilation, self.padding = k, conv.dilation[0], conv.padding[0]

    @staticmethod
    def supports(psp: nn.Module) -> bool:
        """Whether ``psp``'s bottleneck convolution is one this form computes exactly."""
        conv = psp.bottleneck[0]
        if type(conv) is not nn.Conv2d or conv.groups != 1 or conv.stride != (1, 1) or conv.padding_mode != "zeros":
            return False
        k, d, p = conv.kernel_size, conv.dilation, conv.padding
        return k[0] == k[1] and d[0] == d[1] and isinstance(p, tuple) and p[0] == p[1] == d[0] * (k[0] // 2)

    def forward(self, x: Tensor) -> Tensor:
        b, _, h, w = x.shape
        k, o = self.k, self.main.out_channels
        y = self.main(x)  # (B, O, H, W): the bottleneck on x's own channels
        for i, (s, branch) in enumerate(zip(self.bins, self.branches)):
            pooled = branch(F.adaptive_avg_pool2d(x, s)).flatten(2)  # (B, C_b, s·s)
            z = torch.matmul(getattr(self, f"mix{i}"), pooled).view(b, k, k, o, s, s)  # (B, dy, dx, O, s, s)
            a_h = interpolation_taps(s, h, k, self.dilation, self.padding, pooled)  # (dy, H, s)
            a_w = interpolation_taps(s, w, k, self.dilation, self.padding, pooled)  # (dx, W, s)
            t = torch.einsum("bdeopq,ejq->bdopj", z, a_w)  # (B, dy, O, s, W)
            y = y + torch.einsum("dip,bdopj->boij", a_h, t)  # (B, O, H, W)
        return self.rest(y)
