"""Horizontal flip for parsing: mirror a map and swap the left/right class channels (LIP pairs 14↔15, 16↔17, 18↔19).

Flip test as in SCHP ``evaluate.py`` and HRNet-Seg ``lip.py``: average the logits of the image with the mirrored
logits of the mirrored image, whose left/right channels are swapped back (docs/datasets-and-metrics.md §1.1).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from ...data.schema import LIP_FLIP_PAIRS

__all__ = ["LIP_FLIP_PAIRS", "flip_logits", "flip_permutation", "flip_test_logits"]


def flip_permutation(num_classes: int, pairs: Sequence[tuple[int, int]] = LIP_FLIP_PAIRS) -> list[int]:
    """Channel order of a mirrored map: ``perm[c]`` is the channel whose content class ``c`` takes after the flip.

    Raises:
        ValueError: a pair names a class outside ``[0, num_classes)`` or a class appears twice.
    """
    perm = list(range(num_classes))
    seen: set[int] = set()
    for a, b in pairs:
        if not (0 <= a < num_classes and 0 <= b < num_classes) or a in seen or b in seen or a == b:
            raise ValueError(
                f"flip pairs {list(pairs)} are invalid for {num_classes} classes (out of range or repeated)"
            )
        seen |= {a, b}
        perm[a], perm[b] = b, a
    return perm


def flip_logits(logits: Tensor, pairs: Sequence[tuple[int, int]] = LIP_FLIP_PAIRS) -> Tensor:
    """Mirror (B, C, H, W) logits along W and swap the paired class channels."""
    perm = torch.as_tensor(flip_permutation(logits.shape[1], pairs), device=logits.device)
    return logits.flip(-1).index_select(1, perm)  # (B, C, H, W)


def flip_test_logits(
    predict: Callable[[Tensor], Tensor], image: Tensor, pairs: Sequence[tuple[int, int]] = LIP_FLIP_PAIRS
) -> Tensor:
    """``(predict(x) + flip_logits(predict(mirror(x)))) / 2`` for a (B, 3, H, W) image batch.

    Args:
        predict: maps an image batch to (B, C, h, w) logits.
        image: the input batch.
        pairs: class pairs to swap back in the mirrored prediction.
    """
    both = predict(torch.cat([image, image.flip(-1)], dim=0))  # (2B, C, h, w)
    plain, mirrored = both.chunk(2, dim=0)
    return (plain + flip_logits(mirrored, pairs)) / 2
