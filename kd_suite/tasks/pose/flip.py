"""Flip test for pose models, combined at the coordinate level with exact pixel geometry.

Mirroring an input of width W maps pixel x to ``W − 1 − x`` (pixel centres at integers), i.e. normalised
``x ↦ (W − 1)/W − x``. Both passes are decoded to coordinates, the mirrored one is mapped back exactly and its
left/right joints swapped, then coordinates and confidences are averaged. This replaces the HRNet heatmap-averaging
flip with its one-pixel shift heuristic (``shift_heatmap``) and the ``x ↦ 1 − x`` of mmpose's ``fliplr_regression``
(off by half a pixel), and works the same for heatmap and regression models.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from ...outputs import PoseOutput

__all__ = ["flip_test", "predict_coords", "swap_joints", "unflip_coords"]


def swap_joints(x: Tensor, flip_pairs: Sequence[Sequence[int]]) -> Tensor:
    """Swap left/right joints along dim 1 (works for (B, K, ...) tensors)."""
    index = list(range(x.shape[1]))
    for a, b in flip_pairs:
        index[a], index[b] = b, a
    return x[:, index]


def unflip_coords(coords: Tensor, flip_pairs: Sequence[Sequence[int]], width: int) -> Tensor:
    """Normalised (B, K, 2) coordinates predicted on a mirrored input → coordinates on the original input."""
    x = (width - 1) / width - coords[..., 0]  # (B, K)
    return swap_joints(torch.stack([x, coords[..., 1]], dim=-1), flip_pairs)


def predict_coords(output: PoseOutput) -> tuple[Tensor, Tensor]:
    """(coords (B, K, 2) normalised, confidence (B, K) in [0, 1]) of an eval-mode pose output."""
    if output.coords is None or output.scores is None:
        raise ValueError(
            "the pose model returned no coords/scores; heatmap models decode them in eval mode only (call .eval())"
        )
    return output.coords.float(), torch.sigmoid(output.scores.float())


def flip_test(
    model: Callable[[Tensor], PoseOutput],
    image: Tensor,
    flip_pairs: Sequence[Sequence[int]] | None,
    output: PoseOutput | None = None,
) -> tuple[Tensor, Tensor]:
    """Predict on ``image`` and (when ``flip_pairs`` is given) on its mirror; average the two.

    Args:
        model: eval-mode pose model.
        image: (B, 3, H, W).
        flip_pairs: left/right joint index pairs; ``None`` disables the flipped pass.
        output: the model's output on ``image`` when already computed (saves one forward).

    Returns:
        coords (B, K, 2) normalised and confidence (B, K) in [0, 1].
    """
    coords, conf = predict_coords(model(image) if output is None else output)
    if flip_pairs is None:
        return coords, conf
    f_coords, f_conf = predict_coords(model(torch.flip(image, dims=[-1])))
    f_coords = unflip_coords(f_coords, flip_pairs, image.shape[-1])
    return 0.5 * (coords + f_coords), 0.5 * (conf + swap_joints(f_conf, flip_pairs))
