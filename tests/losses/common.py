"""Tiny inputs shared by the loss tests: parsing outputs with declared taps, a parsing batch, loop-friendly helpers."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from kd_suite.data.batch import ParsingBatch
from kd_suite.outputs import ParsingOutput, TapInfo

B, K, H, W = 2, 3, 6, 6  # batch, classes, logit/feature size
C_S, C_T, C_F = 4, 6, 5  # student embedding, teacher embedding, shared "features.0" width

STUDENT_TAPS = {"logits": TapInfo(K, 8), "embedding": TapInfo(C_S, 8), "features.0": TapInfo(C_F, 8)}
TEACHER_TAPS = {"logits": TapInfo(K, 8), "embedding": TapInfo(C_T, 8), "features.0": TapInfo(C_F, 8)}


def outputs(seed: int = 0, dtype: torch.dtype = torch.float32, scale: float = 1.0, grad: bool = True):
    """Student and teacher outputs with every tap the cases use; all tensors are leaves that require grad."""
    g = torch.Generator().manual_seed(seed)

    def leaf(*shape: int) -> Tensor:
        return (scale * torch.randn(*shape, generator=g)).to(dtype).requires_grad_(grad)

    s = ParsingOutput(logits=leaf(B, K, H, W), embedding=leaf(B, C_S, H, W), features=[leaf(B, C_F, H, W)])
    t = ParsingOutput(logits=leaf(B, K, H, W), embedding=leaf(B, C_T, H, W), features=[leaf(B, C_F, H, W)])
    return s, t


def parsing_batch(seed: int = 0, size: int = 2 * H, ignore_frac: float = 0.15) -> ParsingBatch:
    """Masks at twice the logit size made of constant 2×2 blocks, so nearest resizing is unambiguous."""
    g = torch.Generator().manual_seed(seed)
    small = torch.randint(0, K, (B, size // 2, size // 2), generator=g)
    small[torch.rand(small.shape, generator=g) < ignore_frac] = 255
    mask = small.repeat_interleave(2, dim=1).repeat_interleave(2, dim=2)
    return ParsingBatch(image=torch.zeros(B, 3, size, size), mask=mask)


def small_labels(batch: ParsingBatch) -> Tensor:
    """The (B, H, W) labels behind :func:`parsing_batch` (every other pixel)."""
    return batch.mask[:, ::2, ::2]


def softmax_list(values: list[float]) -> list[float]:
    """Plain-python softmax."""
    top = max(values)
    exps = [math.exp(v - top) for v in values]
    total = sum(exps)
    return [e / total for e in exps]


def kl_list(p: list[float], q: list[float]) -> float:
    """Plain-python KL(p ‖ q); terms with p = 0 contribute 0."""
    return sum(pi * (math.log(pi) - math.log(qi)) for pi, qi in zip(p, q) if pi > 0)
