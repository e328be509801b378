"""Heatmap encoding and decoding: Gaussian rendering, argmax, DARK and soft-argmax sub-pixel decoding.

Coordinate conventions used across the pose task (one place, so every module agrees):

* *input pixels*: (x, y) in the network input crop, pixel centres at integers (the convention of ``cv2.warpAffine``).
* *heatmap pixels*: ``x_hm = x_in / stride`` (HRNet/mmpose MSRA convention, no half-pixel shift).
* *normalised*: ``x_norm = x_in / W_in`` (so ``x_hm = x_norm · W_hm`` when ``W_in = stride · W_hm``); this is what
  :class:`~kd_suite.outputs.PoseOutput` ``coords`` holds.

References: MSRA/unbiased Gaussian encoding (Xiao et al., SimpleBaseline, ECCV 2018; Zhang et al., DARK, CVPR 2020);
DARK decoding as in mmpose ``refine_keypoints_dark`` (confirmed: blur, log, Taylor step from finite differences at
the integer argmax); soft-argmax (Sun et al., Integral regression, ECCV 2018).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "argmax_2d",
    "confidence_logit",
    "dark_kernel",
    "decode_heatmaps",
    "gaussian_blur",
    "refine_dark",
    "render_gaussians",
    "simulated_heatmaps",
    "soft_argmax",
]

DECODERS = ("argmax", "dark", "soft_argmax")


def render_gaussians(centers: Tensor, size: tuple[int, int], sigma: float | Tensor) -> Tensor:
    """Render unnormalised Gaussians ``exp(-½[(x−μx)²/σx² + (y−μy)²/σy²])`` at sub-pixel centres (peak 1).

    Args:
        centers: (..., 2) centres (x, y) in heatmap pixels.
        size: (h, w) of the heatmap.
        sigma: a float, or a tensor broadcastable to ``centers`` ((..., 1) or (..., 2) as (σx, σy)), heatmap pixels.

    Shape:
        centers: (B, K, 2) → (B, K, h, w).
    """
    h, w = size
    sigma = torch.as_tensor(sigma, dtype=centers.dtype, device=centers.device).expand_as(centers)  # (..., 2)
    xs = torch.arange(w, dtype=centers.dtype, device=centers.device)  # (w,)
    ys = torch.arange(h, dtype=centers.dtype, device=centers.device)  # (h,)
    dx = (xs - centers[..., 0:1]) / sigma[..., 0:1]  # (..., w)
    dy = (ys - centers[..., 1:2]) / sigma[..., 1:2]  # (..., h)
    return torch.exp(-0.5 * (dy.unsqueeze(-1) ** 2 + dx.unsqueeze(-2) ** 2))  # (..., h, w)


def simulated_heatmaps(coords: Tensor, sigmas: Tensor, size: tuple[int, int]) -> tuple[Tensor, Tensor]:
    """Simulated heatmaps of a regression model: Gaussians at its coordinates with its predicted spread.

    DistilPose ``Reg2HMLoss.generate_msra_heatmap(unbiased_encoding=True, gaussian_mode='s2')`` [confirmed]: centre
    ``μ = coords · (w, h)``, spread ``σ`` per axis, and a joint is masked when its 3σ box lies outside the map.

    Args:
        coords: (B, K, 2) normalised (x, y).
        sigmas: (B, K, 2) normalised (σx, σy) (multiplied by (w, h) to get heatmap pixels).
        size: (h, w) of the heatmap to render.

    Returns:
        heatmaps (B, K, h, w) and the in-map mask (B, K) as float (1 = rendered).
    """
    h, w = size
    scale = coords.new_tensor([w, h])
    mu = coords * scale  # (B, K, 2) heatmap pixels
    sig = sigmas * scale + 1e-9  # (B, K, 2); DistilPose adds 1e-9 to σ² instead, same within float error
    lo, hi = mu - 3 * sig, mu + 3 * sig + 1  # (B, K, 2)
    inside = (lo[..., 0] < w) & (lo[..., 1] < h) & (hi[..., 0] >= 0) & (hi[..., 1] >= 0)  # (B, K)
    heat = render_gaussians(mu, size, sig) * inside[..., None, None]  # (B, K, h, w)
    return heat, inside.to(coords.dtype)


def argmax_2d(heatmaps: Tensor) -> tuple[Tensor, Tensor]:
    """Integer arg-max of every channel.

    Returns:
        coords (B, K, 2) as float (x, y) heatmap pixels, and maxvals (B, K).
    """
    b, k, h, w = heatmaps.shape
    maxvals, idx = heatmaps.reshape(b, k, h * w).max(dim=-1)  # (B, K)
    coords = torch.stack([idx % w, torch.div(idx, w, rounding_mode="floor")], dim=-1)  # (B, K, 2)
    return coords.to(heatmaps.dtype), maxvals


def gaussian_blur(heatmaps: Tensor, kernel: int) -> Tensor:
    """Separable Gaussian blur with OpenCV's default σ for the kernel size, reflect-101 borders, max preserved.

    Mirrors the ``cv2.GaussianBlur(h, (k, k), 0)`` + rescale-to-original-max step of mmpose's DARK.

    Shape:
        (B, K, h, w) → (B, K, h, w).
    """
    if kernel % 2 != 1:
        raise ValueError(f"gaussian_blur: kernel must be odd, got {kernel}")
    b, k, h, w = heatmaps.shape
    sigma = 0.3 * ((kernel - 1) * 0.5 - 1) + 0.8  # cv2.getGaussianKernel default
    r = kernel // 2
    t = torch.arange(-r, r + 1, dtype=heatmaps.dtype, device=heatmaps.device)
    g = torch.exp(-(t**2) / (2 * sigma**2))
    g = g / g.sum()  # (kernel,)
    x = heatmaps.reshape(b * k, 1, h, w)
    pad_mode = "reflect" if min(h, w) > r else "replicate"
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode=pad_mode), g.view(1, 1, 1, -1))  # blur along x
    x = F.conv2d(F.pad(x, (0, 0, r, r), mode=pad_mode), g.view(1, 1, -1, 1))  # blur along y
    x = x.reshape(b, k, h, w)
    peak = heatmaps.amax(dim=(-2, -1), keepdim=True)  # (B, K, 1, 1)
    return x * peak / x.amax(dim=(-2, -1), keepdim=True).clamp_min(1e-12)


def dark_kernel(size: tuple[int, int]) -> int:
    """DARK's modulation kernel for an (h, w) heatmap: mmpose's ratio, 11 px for 64×48 maps and 17 for 96×72.

    ``k = odd(⌊11 · min(h, w) / 48⌋)``, at least 3: 3 for 16×16 maps, 7 for 32×32. A fixed 11-px kernel on a 16×16 map
    flattens the peak into its neighbourhood and pulls joints near the border towards the centre.
    """
    k = int(min(size) * 11 / 48) | 1
    return max(3, k)


def check_blur_kernel(blur_kernel: int | None, where: str) -> None:
    """``None`` (follow the heatmap size) or a positive odd int; 1 disables the blur."""
    if blur_kernel is not None and (not isinstance(blur_kernel, int) or blur_kernel < 1 or blur_kernel % 2 == 0):
        raise ValueError(
            f"{where}: blur_kernel must be None (follow the heatmap size) or a positive odd int, got {blur_kernel!r}"
        )


def refine_dark(heatmaps: Tensor, coords: Tensor, blur_kernel: int | None = None) -> Tensor:
    """DARK sub-pixel refinement (Zhang et al., CVPR 2020): one Newton step on the log-heatmap at the arg-max.

    ``offset = −H⁻¹ ∇`` with central differences (step 1 for the gradient, step 2 for the Hessian diagonal), applied
    only where the integer peak is at least 2 pixels from the border and the Hessian is invertible (as in mmpose).

    Args:
        heatmaps: (B, K, h, w).
        coords: (B, K, 2) integer arg-max (x, y) from :func:`argmax_2d`.
        blur_kernel: odd Gaussian kernel modulating the map first; 1 disables the blur; ``None`` follows the
            heatmap size (:func:`dark_kernel`).

    Returns:
        (B, K, 2) refined coordinates in heatmap pixels.
    """
    b, k, h, w = heatmaps.shape
    if blur_kernel is None:
        blur_kernel = dark_kernel((h, w))
    hm = gaussian_blur(heatmaps, blur_kernel) if blur_kernel > 1 else heatmaps
    logh = hm.clamp(1e-3, 50.0).log().reshape(b, k, h * w)  # (B, K, h·w)
    xi, yi = coords[..., 0].long(), coords[..., 1].long()  # (B, K)
    valid = (xi > 1) & (xi < w - 2) & (yi > 1) & (yi < h - 2)
    xi, yi = xi.clamp(2, max(w - 3, 2)), yi.clamp(2, max(h - 3, 2))

    def at(dx: int, dy: int) -> Tensor:
        idx = ((yi + dy) * w + (xi + dx)).clamp(0, h * w - 1)  # (B, K)
        return logh.gather(-1, idx.unsqueeze(-1)).squeeze(-1)  # (B, K)

    c = at(0, 0)
    gx = 0.5 * (at(1, 0) - at(-1, 0))
    gy = 0.5 * (at(0, 1) - at(0, -1))
    hxx = 0.25 * (at(2, 0) - 2 * c + at(-2, 0))
    hyy = 0.25 * (at(0, 2) - 2 * c + at(0, -2))
    hxy = 0.25 * (at(1, 1) - at(1, -1) - at(-1, 1) + at(-1, -1))
    det = hxx * hyy - hxy**2  # (B, K)
    ok = valid & (det.abs() > 1e-12)
    det = torch.where(ok, det, torch.ones_like(det))
    ox = -(hyy * gx - hxy * gy) / det  # inverse of [[hxx, hxy], [hxy, hyy]] times the gradient
    oy = -(-hxy * gx + hxx * gy) / det
    offset = torch.stack([ox, oy], dim=-1) * ok.unsqueeze(-1)  # (B, K, 2)
    return coords + offset


def soft_argmax(heatmaps: Tensor, beta: float | None = None) -> tuple[Tensor, Tensor]:
    """Expected position under the normalised heatmap (integral regression).

    Args:
        heatmaps: (B, K, h, w).
        beta: ``None`` weights positions by ``relu(H) / Σ relu(H)`` (exact for an untruncated Gaussian);
            a float uses ``softmax(β·H)`` over the map instead.

    Returns:
        coords (B, K, 2) heatmap pixels (x, y) and maxvals (B, K).
    """
    b, k, h, w = heatmaps.shape
    flat = heatmaps.reshape(b, k, h * w)
    if beta is None:
        p = flat.clamp_min(0)
        p = p / p.sum(-1, keepdim=True).clamp_min(1e-12)  # (B, K, h·w)
    else:
        p = torch.softmax(beta * flat, dim=-1)
    p = p.reshape(b, k, h, w)
    xs = torch.arange(w, dtype=heatmaps.dtype, device=heatmaps.device)
    ys = torch.arange(h, dtype=heatmaps.dtype, device=heatmaps.device)
    x = (p.sum(-2) * xs).sum(-1)  # (B, K)
    y = (p.sum(-1) * ys).sum(-1)  # (B, K)
    return torch.stack([x, y], dim=-1), flat.amax(-1)


def decode_heatmaps(heatmaps: Tensor, method: str = "dark", blur_kernel: int | None = None) -> tuple[Tensor, Tensor]:
    """Decode heatmaps to sub-pixel coordinates and peak confidences.

    Args:
        heatmaps: (B, K, h, w).
        method: ``"argmax"`` (integer peak), ``"dark"`` (arg-max + DARK step) or ``"soft_argmax"``.
        blur_kernel: DARK modulation kernel; ``None`` follows the heatmap size (:func:`dark_kernel`).

    Returns:
        coords (B, K, 2) in heatmap pixels and maxvals (B, K) (the raw peak value).
    """
    if method not in DECODERS:
        raise ValueError(f"decode_heatmaps: method must be one of {DECODERS}, got {method!r}")
    if method == "soft_argmax":
        return soft_argmax(heatmaps)
    coords, maxvals = argmax_2d(heatmaps)
    if method == "dark":
        coords = refine_dark(heatmaps, coords, blur_kernel)
    return coords, maxvals


def confidence_logit(maxvals: Tensor, eps: float = 1e-4) -> Tensor:
    """Peak values as logits (``sigmoid(logit) = clamp(maxval)``) so heatmap and regression scores share a type."""
    p = maxvals.clamp(eps, 1 - eps)
    return torch.log(p) - torch.log1p(-p)
