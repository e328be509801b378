"""Token transformer head of the regression student (DistilPose TDE / TokenPose style) with exposed attention.

Confirmed from DistilPose (``heads/utils/tokenbase.py::DistilPose_base``, yshMars/DistilPose@91651a8): patches of the
stride-4 feature map are flattened ``(p1 p2 c)`` and linearly embedded; K learnable keypoint tokens (trunc-normal
std 0.02) are prepended; a fixed 2-D sine position embedding is added to the visual tokens before the first layer and
re-added before every later layer (``'sine-full'``); layers are pre-norm attention + GELU MLP with residuals,
attention scale ``(dim/heads)^-0.5``; the output per keypoint token is ``LN → Linear(dim→5)`` giving
``sigmoid`` coordinates, a score logit and ``softplus`` spreads.

Added here: every layer returns its post-softmax attention so the keypoint-token → visual-token block can be
distilled (the attention loss L_A of the PRL 2024 student, reconstructed). Attention is computed with explicit
matmuls (no fused kernel), so FLOP counters see it.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def sine_position_embedding(h: int, w: int, dim: int, temperature: float = 10000.0) -> Tensor:
    """DETR-style 2-D sine embedding of an h×w grid, normalised to 2π, y half first: (1, h·w, dim)."""
    half = dim // 2
    eps, scale = 1e-6, 2 * math.pi
    y = torch.arange(1, h + 1, dtype=torch.float32)[:, None].expand(h, w) / (h + eps) * scale  # (h, w)
    x = torch.arange(1, w + 1, dtype=torch.float32)[None, :].expand(h, w) / (w + eps) * scale
    dim_t = temperature ** (2 * (torch.arange(half) // 2).float() / half)  # (half,)
    px, py = x[..., None] / dim_t, y[..., None] / dim_t  # (h, w, half)
    px = torch.stack([px[..., 0::2].sin(), px[..., 1::2].cos()], dim=-1).flatten(-2)
    py = torch.stack([py[..., 0::2].sin(), py[..., 1::2].cos()], dim=-1).flatten(-2)
    return torch.cat([py, px], dim=-1).reshape(1, h * w, 2 * half)


class Attention(nn.Module):
    """Multi-head self-attention returning ``(output, attention)`` with attention (B, heads, N, N)."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"Attention: dim={dim} is not divisible by heads={heads}")
        self.heads, self.scale = heads, (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        b, n, d = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)  # (B, h, N, d_h)
        attn = torch.softmax((q @ k.transpose(-2, -1)) * self.scale, dim=-1)  # (B, h, N, N)
        out = (attn @ v).transpose(1, 2).reshape(b, n, d)  # (B, N, D)
        return self.proj(out), attn


class TransformerLayer(nn.Module):
    """Pre-norm layer: ``x + Attn(LN x)`` then ``x + MLP(LN x)``."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        y, attn = self.attn(self.norm1(x))
        x = x + y
        return x + self.mlp(self.norm2(x)), attn


class TokenRegressionHead(nn.Module):
    """Patch embedding + keypoint tokens + transformer + per-token regression (DistilPose ``out_mode='all'``).

    Args:
        in_channels: channels of the input feature map.
        feature_size: (h, w) of the input feature map (fixed: the position embedding is built for it).
        patch_size: (p_h, p_w) patch of the feature map per visual token ((4, 3) in DistilPose-S at 64×48).
        num_joints: K keypoint tokens.
        dim: token width (192 in DistilPose-S).
        depth: number of transformer layers (12 in DistilPose-S).
        heads: attention heads (8).
        mlp_ratio: MLP hidden width / dim (3).

    Attributes:
        grid: (h / p_h, w / p_w) visual-token grid.
    """

    def __init__(
        self,
        in_channels: int,
        feature_size: tuple[int, int],
        patch_size: tuple[int, int],
        num_joints: int,
        dim: int = 192,
        depth: int = 12,
        heads: int = 8,
        mlp_ratio: float = 3.0,
    ) -> None:
        super().__init__()
        (fh, fw), (ph, pw) = feature_size, patch_size
        if fh % ph or fw % pw:
            raise ValueError(f"TokenRegressionHead: feature map {fh}×{fw} is not divisible by patch {ph}×{pw}")
        self.patch_size, self.grid, self.num_joints = (ph, pw), (fh // ph, fw // pw), num_joints
        self.embed = nn.Linear(in_channels * ph * pw, dim)
        self.keypoint_tokens = nn.Parameter(torch.zeros(1, num_joints, dim))
        self.register_buffer("pos", sine_position_embedding(*self.grid, dim), persistent=False)
        self.layers = nn.ModuleList(TransformerLayer(dim, heads, mlp_ratio) for _ in range(depth))
        self.head = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, 5))
        self.apply(_init_weights)
        nn.init.trunc_normal_(self.keypoint_tokens, std=0.02)

    def forward(self, feature: Tensor) -> tuple[Tensor, Tensor, Tensor, list[Tensor]]:
        """(B, C, h, w) → coords (B, K, 2) ∈ (0, 1), score logits (B, K), raw spreads (B, K, 2) ≥ 0, attentions.

        Each attention is the keypoint-token → visual-token block of one layer, (B, heads, K, P), P = grid cells;
        rows are not renormalised (they sum to 1 over all K + P tokens).
        """
        b, c, h, w = feature.shape
        (ph, pw), (gh, gw), k = self.patch_size, self.grid, self.num_joints
        if (h // ph, w // pw) != (gh, gw):
            raise ValueError(
                f"TokenRegressionHead: built for a {gh * ph}×{gw * pw} feature map, got {h}×{w}; "
                "set input_size of the model to the crop size of the data"
            )
        x = feature.reshape(b, c, gh, ph, gw, pw).permute(0, 2, 4, 3, 5, 1).reshape(b, gh * gw, ph * pw * c)
        x = self.embed(x) + self.pos  # (B, P, D)
        x = torch.cat([self.keypoint_tokens.expand(b, -1, -1), x], dim=1)  # (B, K+P, D)
        attentions = []
        for i, layer in enumerate(self.layers):
            if i > 0:  # 'sine-full': the position embedding is re-added before every layer
                x = torch.cat([x[:, :k], x[:, k:] + self.pos], dim=1)
            x, attn = layer(x)
            attentions.append(attn[:, :, :k, k:])  # (B, heads, K, P)
        out = self.head(x[:, :k])  # (B, K, 5)
        return out[..., :2].sigmoid(), out[..., 2], F.softplus(out[..., 3:5]), attentions


def _init_weights(m: nn.Module) -> None:
    """DistilPose ``apply_init=True``: trunc-normal(0.02) linears with zero bias, unit LayerNorms."""
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)
