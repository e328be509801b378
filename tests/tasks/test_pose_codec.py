"""Heatmap codec: sub-pixel round trips, simulated heatmaps against a loop renderer, binarization closed forms."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from kd_suite.tasks.pose.codec import argmax_2d, decode_heatmaps, render_gaussians, simulated_heatmaps
from kd_suite.tasks.pose.dskd import binarize

CENTRES = torch.tensor([[[20.3, 30.7], [10.55, 12.2], [33.9, 40.45], [24.0, 31.0], [8.71, 50.28]]])


def loop_gaussian(h: int, w: int, mx: float, my: float, sx: float, sy: float) -> np.ndarray:
    out = np.zeros((h, w))
    for y in range(h):
        for x in range(w):
            out[y, x] = math.exp(-0.5 * ((x - mx) ** 2 / sx**2 + (y - my) ** 2 / sy**2))
    return out


def test_render_matches_a_pixel_loop():
    maps = render_gaussians(CENTRES[:, :2], (20, 24), torch.tensor([[[2.0, 2.0], [1.5, 3.0]]]))
    ref0 = loop_gaussian(20, 24, 20.3, 30.7, 2.0, 2.0)
    ref1 = loop_gaussian(20, 24, 10.55, 12.2, 1.5, 3.0)
    np.testing.assert_allclose(maps[0, 0].numpy(), ref0, atol=1e-6)
    np.testing.assert_allclose(maps[0, 1].numpy(), ref1, atol=1e-6)


@pytest.mark.parametrize(("method", "tol"), [("dark", 0.05), ("soft_argmax", 0.05), ("argmax", 0.5)])
def test_decode_recovers_sub_pixel_centres(method, tol):
    heat = render_gaussians(CENTRES, (64, 48), 2.0)  # (1, 5, 64, 48)
    coords, maxvals = decode_heatmaps(heat, method)
    err = (coords - CENTRES).abs().max().item()
    assert err <= tol, f"{method}: max error {err:.4f} px"
    peak = torch.exp(-0.5 * ((CENTRES - CENTRES.round()) ** 2).sum(-1) / 4.0)  # value at the nearest pixel
    torch.testing.assert_close(maxvals, peak, atol=1e-5, rtol=0)


def test_dark_is_exact_without_blur_and_argmax_is_integer():
    heat = render_gaussians(CENTRES, (64, 48), 2.5)
    coords, _ = decode_heatmaps(heat, "dark", blur_kernel=0)  # log of a Gaussian is a quadratic: one Newton step
    torch.testing.assert_close(coords, CENTRES, atol=1e-3, rtol=0)
    integer, _ = argmax_2d(heat)
    assert torch.equal(integer, CENTRES.round())


def test_dark_leaves_border_peaks_alone():
    heat = render_gaussians(torch.tensor([[[0.6, 10.2]]]), (32, 24), 2.0)
    coords, _ = decode_heatmaps(heat, "dark")
    assert coords[0, 0, 0].item() == 1.0  # integer peak at x=1 is within 2 px of the border: no refinement


def test_simulated_heatmaps_scale_and_mask():
    coords = torch.tensor([[[0.5, 0.25], [1.6, 0.5]]])  # second joint far right of the map
    sigmas = torch.tensor([[[0.05, 0.1], [0.01, 0.01]]])
    heat, inside = simulated_heatmaps(coords, sigmas, (16, 20))
    ref = loop_gaussian(16, 20, 0.5 * 20, 0.25 * 16, 0.05 * 20, 0.1 * 16)
    np.testing.assert_allclose(heat[0, 0].numpy(), ref, atol=1e-5)
    assert inside.tolist() == [[1.0, 0.0]] and heat[0, 1].abs().sum() == 0


def test_hard_binarization_of_a_gaussian_is_the_half_maximum_disc():
    sigma, cx, cy = 3.0, 20.25, 17.5
    heat = render_gaussians(torch.tensor([[[cx, cy]]]), (40, 44), sigma)
    mask = binarize(heat, "hard", 0.5)[0, 0].numpy()
    peak = heat.max().item()  # the sampled peak is below 1 (off-grid centre); threshold is 0.5·peak
    radius = sigma * math.sqrt(2 * math.log(2) - 2 * math.log(peak))  # exp(-r²/2σ²) = θ·peak
    yy, xx = np.mgrid[:40, :44]
    disc = (xx - cx) ** 2 + (yy - cy) ** 2 <= radius**2 + 1e-6
    assert set(np.unique(mask)) <= {0.0, 1.0}
    assert np.array_equal(mask.astype(bool), disc)
    centred = binarize(render_gaussians(torch.tensor([[[22.0, 20.0]]]), (40, 44), sigma), "hard", 0.5)[0, 0]
    r = sigma * math.sqrt(2 * math.log(2))  # σ·√(2 ln 2) when the centre is on the grid
    assert centred.sum().item() == ((xx - 22) ** 2 + (yy - 20) ** 2 <= r**2).sum()


def test_clip_and_gt_gated_binarization():
    g = torch.Generator().manual_seed(0)
    heat = torch.rand(2, 3, 8, 8, generator=g)
    clip = binarize(heat, "clip", 0.6)
    keep = heat >= 0.6 * heat.amax(dim=(-2, -1), keepdim=True)
    assert torch.equal(clip, torch.where(keep, heat, torch.zeros_like(heat)))
    assert torch.equal(binarize(heat, "clip"), heat * (heat >= 0.1 * heat.amax(dim=(-2, -1), keepdim=True)))
    gt = torch.zeros(2, 3, 8, 8)
    gt[..., 2:5, 3:6] = 1.0
    gated = binarize(heat, "gt_gated", gt=gt)
    assert torch.equal(gated, heat * (gt > 0))
    assert torch.equal(binarize(-heat, "hard"), torch.zeros_like(heat))  # no positive peak: nothing kept
    with pytest.raises(ValueError, match="gt_gated"):
        binarize(heat, "gt_gated")
    with pytest.raises(ValueError, match="mode"):
        binarize(heat, "soft")
