"""Fold eval-mode BatchNorms into the convolutions that feed them (a frozen teacher's exact fast path).

An eval-mode BatchNorm is the per-channel affine map ``y = (x − μ)·γ/√(σ² + ε) + β``. When its input is the output
of a convolution and nothing else reads that output, the map can be written into the convolution's weight and bias:
``W' = W·s`` and ``b' = (b − μ)·s + β`` with ``s = γ/√(σ² + ε)`` on the output-channel axis (dim 0 of a ``Conv2d``
weight, dim 1 of a ``ConvTranspose2d`` weight), after which the BatchNorm becomes an ``Identity``. Every module's
output is unchanged up to float rounding, taps (backbone levels, decoder features) included.

Pairs are only folded where the forward order is known, not guessed from attribute names:

* consecutive children of an ``nn.Sequential`` (``ConvBN``, SimpleBaseline deconvolutions, timm ``downsample``);
* consecutive children of a timm ``FeatureDictNet`` / ``FeatureListNet`` (the ResNet stem ``conv1``/``bn1``) when
  the convolution's own output is not a returned feature;
* the attribute pairs of blocks whose forward applies the BatchNorm straight to the convolution output
  (:func:`known_pairs`: timm ResNet ``BasicBlock`` / ``Bottleneck``, YOLOX ``BaseConv``).

Any other BatchNorm is left as it is (still correct, only not folded); :class:`FoldReport` counts both.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache

import torch
from torch import nn

__all__ = ["FoldReport", "fold_batchnorm", "fold_conv_bn", "known_pairs"]

_CONVS = (nn.Conv2d, nn.ConvTranspose2d)
_BATCHNORMS = (nn.BatchNorm2d, nn.SyncBatchNorm)


@cache
def known_pairs() -> dict[type, tuple[tuple[str, str], ...]]:
    """Block class → the (conv attribute, BatchNorm attribute) pairs its forward applies back to back.

    Built on first use (the detection blocks import lazily, so this module never imports a task package).
    """
    pairs: dict[type, tuple[tuple[str, str], ...]] = {}
    try:
        from timm.models.resnet import BasicBlock, Bottleneck

        pairs[BasicBlock] = (("conv1", "bn1"), ("conv2", "bn2"))
        pairs[Bottleneck] = (("conv1", "bn1"), ("conv2", "bn2"), ("conv3", "bn3"))
    except ImportError:  # pragma: no cover - timm is a dependency
        pass
    from ..tasks.detection.blocks import BaseConv

    pairs[BaseConv] = (("conv", "bn"),)
    return pairs


@dataclass
class FoldReport:
    """What :func:`fold_batchnorm` did.

    Attributes:
        folded: qualified names of the BatchNorms written into their convolution.
        kept: qualified names of the BatchNorms left in place (no known conv → BN pair).
    """

    folded: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)

    @property
    def fraction(self) -> float:
        """Share of the model's BatchNorms that were folded (1.0 for a model without any)."""
        total = len(self.folded) + len(self.kept)
        return len(self.folded) / total if total else 1.0

    def __str__(self) -> str:
        return f"{len(self.folded)}/{len(self.folded) + len(self.kept)} BatchNorms folded ({100 * self.fraction:.1f} %)"


def _foldable(conv: nn.Module, bn: nn.Module) -> bool:
    if not isinstance(conv, _CONVS) or type(bn) not in _BATCHNORMS:
        return False
    if bn.running_mean is None or bn.running_var is None or bn.num_features != conv.out_channels:
        return False
    return not (isinstance(conv, nn.ConvTranspose2d) and conv.groups != 1)


@torch.no_grad()
def fold_conv_bn(conv: nn.Conv2d | nn.ConvTranspose2d, bn: nn.BatchNorm2d) -> None:
    """Write the eval-mode affine map of ``bn`` into ``conv`` in place (computed in float64, stored in conv's dtype).

    Raises:
        ValueError: the pair cannot be folded (channel mismatch, no running statistics, grouped transposed conv).
    """
    if not _foldable(conv, bn):
        raise ValueError(f"cannot fold {type(bn).__name__} into {type(conv).__name__}")
    w = conv.weight
    scale = bn.running_var.double().add(bn.eps).rsqrt()  # (C_out,)
    if bn.weight is not None:
        scale = scale * bn.weight.double()
    shift = -bn.running_mean.double() * scale  # (C_out,)
    if bn.bias is not None:
        shift = shift + bn.bias.double()
    if conv.bias is not None:
        shift = shift + conv.bias.double() * scale
    axis = 1 if isinstance(conv, nn.ConvTranspose2d) else 0  # ConvTranspose2d weight: (C_in, C_out, kh, kw)
    shape = [1] * w.ndim
    shape[axis] = -1
    conv.weight = nn.Parameter((w.double() * scale.view(shape)).to(w.dtype), requires_grad=False)
    conv.bias = nn.Parameter(shift.to(w.dtype), requires_grad=False)


def _ordered_children(module: nn.Module) -> list[tuple[str, nn.Module]] | None:
    """Children in execution order for containers that run them one after the other, else ``None``."""
    if isinstance(module, nn.Sequential):
        return list(module.named_children())
    returns = getattr(module, "return_layers", None)
    if isinstance(module, nn.ModuleDict) and isinstance(returns, dict) and hasattr(module, "feature_info"):
        return list(module.named_children())  # timm FeatureDictNet: x = child(x) in order, some outputs returned
    return None


def _last_conv(module: nn.Module | None) -> nn.Module | None:
    """The module whose output ``module``'s output is: itself, or the last child of a Sequential (recursively).

    A BatchNorm that follows a Sequential ending in a convolution (timm's deep stems: ``conv1`` = conv-bn-act-conv-
    bn-act-conv, then ``bn1``) folds into that last convolution.
    """
    while isinstance(module, nn.Sequential) and len(module):
        module = module[-1]
    return module


def fold_batchnorm(model: nn.Module) -> FoldReport:
    """Fold every known conv → BatchNorm pair of an eval-mode ``model`` in place; BatchNorms become ``Identity``.

    Call it on a copy: the model's state dict changes (conv biases appear, BatchNorm buffers go).

    Raises:
        ValueError: ``model`` is in train mode (batch statistics cannot be folded).
    """
    if any(m.training for m in model.modules()):
        raise ValueError("fold_batchnorm needs an eval-mode model (call .eval() first)")
    names = {id(m): n for n, m in model.named_modules()}
    used: set[int] = set()  # convs and BatchNorms already folded (each takes part in one pair at most)
    report = FoldReport()
    for parent in list(model.modules()):
        pairs: list[tuple[nn.Module | None, str]] = []  # (conv, name of the BatchNorm child of parent)
        children = _ordered_children(parent)
        if children is not None:
            returned = getattr(parent, "return_layers", {})
            pairs += [(_last_conv(prev), b) for (a, prev), (b, _) in zip(children, children[1:]) if a not in returned]
        pairs += [(getattr(parent, a, None), b) for a, b in known_pairs().get(type(parent), ())]
        for conv, bn_name in pairs:
            bn = getattr(parent, bn_name, None)
            if not _foldable(conv, bn) or id(bn) in used or id(conv) in used:
                continue
            fold_conv_bn(conv, bn)
            used |= {id(conv), id(bn)}
            report.folded.append(names.get(id(bn), bn_name))
            setattr(parent, bn_name, nn.Identity())
    report.kept = [n for n, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    return report
