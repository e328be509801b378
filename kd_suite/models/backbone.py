"""timm backbones as feature pyramids whose channels and strides are known at construction.

timm is the single source of backbones and its ``feature_info`` the single source of channel/stride facts, so task
models can size their necks, heads and distillation taps in ``__init__`` without a dummy forward.
"""

from __future__ import annotations

from torch import Tensor, nn

from ..outputs import TapInfo
from .pretrained import create_timm_model


class Backbone(nn.Module):
    """A timm model built with ``features_only=True``, returning its pyramid finest level first.

    Args:
        name: any timm model name that supports ``features_only`` (``resnet18``, ``resnet50``, ``test_resnet``...).
        pretrained: ImageNet weights from the hub (or the local cache) when True; see :mod:`.pretrained`.
        out_indices: which feature levels to return; ``None`` returns every level timm exposes.
        output_stride: dilate the last stages so the coarsest level has this stride (8 or 16; ``None`` keeps 32).
            Only backbones whose timm implementation supports dilation accept it (ResNets do).

    Attributes:
        channels: channels of each returned level.
        strides: input pixels per feature pixel of each returned level, as reported by timm (dilation included).
    """

    def __init__(
        self,
        name: str,
        pretrained: bool = False,
        out_indices: tuple[int, ...] | None = None,
        output_stride: int | None = None,
    ) -> None:
        super().__init__()
        kwargs: dict = {"features_only": True}
        if out_indices is not None:
            kwargs["out_indices"] = tuple(out_indices)
        if output_stride is not None:
            kwargs["output_stride"] = output_stride
        self.name = name
        self.body = create_timm_model(name, pretrained, **kwargs)  # fails fast, in one line, when offline
        self.channels: list[int] = list(self.body.feature_info.channels())
        self.strides: list[int] = list(self.body.feature_info.reduction())

    def forward(self, x: Tensor) -> list[Tensor]:
        """(B, 3, H, W) → one (B, C_i, H/s_i, W/s_i) map per level, finest first."""
        return list(self.body(x))

    def level_taps(self) -> list[TapInfo]:
        """One :class:`TapInfo` per pyramid level, finest first (the ``features`` entry of :func:`declare_taps`)."""
        return [TapInfo(c, s) for c, s in zip(self.channels, self.strides)]

    def extra_repr(self) -> str:
        return f"name={self.name!r}, channels={self.channels}, strides={self.strides}"
