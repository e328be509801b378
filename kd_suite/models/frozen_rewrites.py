"""Exact rewrites of a frozen model's modules into cheaper programs with the same outputs.

The second step of the frozen-teacher fast path (after :mod:`kd_suite.models.fold_bn`), applied to the private copy
only. Each rewrite computes the same linear algebra with fewer operations or better-shaped kernels, so outputs agree
up to float rounding (a different summation order):

* a module that offers ``frozen_form() -> nn.Module`` is replaced by what it returns (it returns itself when its
  configuration has no cheaper form). PSP pooling does so: :class:`kd_suite.tasks.parsing.psp_frozen.FrozenPSP`;
* a channel-reducing ``ConvTranspose2d`` (``C_in ≥ 4·C_out``: SimpleBaseline's first deconvolution, 2048 → 256) runs
  as one GEMM over the input channels followed by col2im (``F.fold``) — the transposed convolution's own scatter — in
  :class:`GemmConvTranspose2d`. CPU transposed-convolution kernels are slow at many input channels and small maps
  (32 → 5 ms for 2048 → 256 at 8×6 on 2 cores); at equal channels they are faster than the GEMM, so those stay.

The rules look only at the modules' configuration, never at timings, so a run's float results never depend on load.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["GemmConvTranspose2d", "rewrite_frozen"]

CHANNEL_REDUCTION = 4  # C_in / C_out from which a ConvTranspose2d runs as GEMM + col2im


class GemmConvTranspose2d(nn.Module):
    """A frozen ``ConvTranspose2d`` as ``col2im(W_mat · x)``: one (C_out·kh·kw, C_in) GEMM per image, then ``F.fold``.

    Args:
        deconv: the transposed convolution (groups 1, dilation 1, no output padding, zero padding mode).
    """

    def __init__(self, deconv: nn.ConvTranspose2d) -> None:
        super().__init__()
        if not gemm_eligible(deconv, min_reduction=1):
            raise ValueError(f"GemmConvTranspose2d: unsupported configuration {deconv}")
        c_in, c_out, kh, kw = deconv.weight.shape
        weight = deconv.weight.detach().permute(1, 2, 3, 0).reshape(c_out * kh * kw, c_in)  # rows ordered (co, ky, kx)
        self.register_buffer("weight", weight.contiguous())
        bias = deconv.bias.detach().view(1, c_out, 1, 1) if deconv.bias is not None else None
        self.register_buffer("bias", bias)
        self.kernel_size, self.stride, self.padding = deconv.kernel_size, deconv.stride, deconv.padding

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        out_h = (h - 1) * self.stride[0] - 2 * self.padding[0] + self.kernel_size[0]
        out_w = (w - 1) * self.stride[1] - 2 * self.padding[1] + self.kernel_size[1]
        cols = torch.matmul(self.weight, x.reshape(b, c, h * w))  # (B, C_out·kh·kw, H·W)
        y = F.fold(
            cols, (out_h, out_w), self.kernel_size, stride=self.stride, padding=self.padding
        )  # (B, C_out, H', W')
        if self.bias is not None:
            y = y + self.bias
        if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
            y = y.contiguous(memory_format=torch.channels_last)  # keep the model's layout for the next layer
        return y


def gemm_eligible(deconv: nn.Module, min_reduction: int = CHANNEL_REDUCTION) -> bool:
    """Whether ``deconv`` is a plain ConvTranspose2d reducing channels by at least ``min_reduction``."""
    if type(deconv) is not nn.ConvTranspose2d:
        return False
    c_in, c_out = deconv.in_channels, deconv.out_channels
    plain = deconv.groups == 1 and deconv.dilation == (1, 1) and deconv.output_padding == (0, 0)
    return (
        plain and deconv.padding_mode == "zeros" and isinstance(deconv.padding, tuple) and c_in >= min_reduction * c_out
    )


def _replacement(module: nn.Module) -> nn.Module | None:
    frozen_form = getattr(module, "frozen_form", None)
    if callable(frozen_form):
        new = frozen_form()
        return None if new is module else new
    if gemm_eligible(module):
        return GemmConvTranspose2d(module)
    return None


@torch.no_grad()
def rewrite_frozen(model: nn.Module) -> list[str]:
    """Replace, in place, every module of ``model`` that has an exact cheaper form; returns their qualified names.

    ``model`` must be a frozen eval-mode copy (the rewritten modules hold constants derived from the weights). A
    replaced module's children are not visited again.
    """
    done: list[str] = []

    def visit(parent: nn.Module, prefix: str) -> None:
        for name, child in list(parent.named_children()):
            qualified = f"{prefix}{name}"
            new = _replacement(child)
            if new is None:
                visit(child, f"{qualified}.")
                continue
            setattr(parent, name, new)
            done.append(qualified)

    visit(model, "")
    return done
