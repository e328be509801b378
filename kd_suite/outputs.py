"""Typed model outputs and the tap mechanism that lets a distillation term name what it reads.

Every model in kd-suite returns a dataclass derived from :class:`ModelOutput`. A *tap* is the name of one tensor in
that output: a field (``"logits"``) or one element of a list field (``"features.2"``, ``"features.-1"``). Models
declare at construction which taps they produce together with their channel count and stride, so distillation
adapters can be sized in ``__init__`` without a dummy forward. Every model declares them the same way, with
:func:`declare_taps`; the names are the output's field names in all three model families (``features.i`` is always
the backbone pyramid, finest first).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field

from torch import Tensor


@dataclass(frozen=True)
class TapInfo:
    """Static facts about one tapped tensor.

    Args:
        channels: size of dim 1 (classes for logits, joints for heatmaps, C for features, K for coordinates).
        stride: input pixels per output pixel (e.g. 8 for a 1/8 feature map); 0 for non-spatial taps.
    """

    channels: int
    stride: int


@dataclass
class ModelOutput:
    """Base class of all model outputs. ``features`` is the multi-level pyramid, finest first."""

    features: list[Tensor] = field(default_factory=list)


@dataclass
class ParsingOutput(ModelOutput):
    """Human-parsing / segmentation output.

    Attributes:
        logits: (B, C, h, w) main head logits at the head's stride (not upsampled).
        aux_logits: deep-supervision logits, each (B, C, h_i, w_i); empty at eval.
        embedding: (B, D, h, w) decoder feature that feeds the head (GSKD/CWD feature tap).
    """

    logits: Tensor | None = None
    aux_logits: list[Tensor] = field(default_factory=list)
    embedding: Tensor | None = None


@dataclass
class PoseOutput(ModelOutput):
    """Pose output. Heatmap models fill ``heatmaps``; regression models fill ``coords``.

    Attributes:
        heatmaps: (B, K, h, w) joint heatmaps.
        coords: (B, K, 2) joint coordinates normalised to [0, 1] as (x, y) over the input image.
        scores: (B, K) joint confidence logits.
        sigmas: (B, K, 2) predicted spread (normalised units), for simulated heatmaps.
        attentions: per-layer keypoint-token → visual-token attention, each (B, heads, K, P).
        aux_heatmaps: intermediate / deep-supervision heatmaps, shallow first, each (B, K, h, w).
    """

    heatmaps: Tensor | None = None
    coords: Tensor | None = None
    scores: Tensor | None = None
    sigmas: Tensor | None = None
    attentions: list[Tensor] = field(default_factory=list)
    aux_heatmaps: list[Tensor] = field(default_factory=list)


@dataclass
class DetectionOutput(ModelOutput):
    """Dense detector output (YOLOX style); ``neck`` holds the per-stride head inputs (FSD/FGD taps).

    Attributes:
        neck: per-level head-stem outputs (YOLOX ``head.stems[i]`` ≡ mmdet ``neck.out_convs[i]``), 256·width channels,
            strides 8/16/32, each (B, C, H_i, W_i).
        cls: per-level class logits, each (B, num_classes, H_i, W_i).
        reg: per-level box regressions, each (B, 4, H_i, W_i).
        obj: per-level objectness logits, each (B, 1, H_i, W_i).
    """

    neck: list[Tensor] = field(default_factory=list)
    cls: list[Tensor] = field(default_factory=list)
    reg: list[Tensor] = field(default_factory=list)
    obj: list[Tensor] = field(default_factory=list)


def declare_taps(output: type[ModelOutput], **fields: TapInfo | Sequence[TapInfo]) -> dict[str, TapInfo]:
    """The ``tap_info`` of a model whose forward returns ``output``: one entry per field it fills.

    A field given one :class:`TapInfo` is the tap ``"name"``; a list field given one per entry becomes ``"name.i"``
    with the alias ``"name.-k"`` counted from the end (``"features.-1"`` is the coarsest level).

    Raises:
        ValueError: a name is not a field of ``output`` (the message lists its fields).
    """
    names = [f.name for f in dataclasses.fields(output)]
    unknown = sorted(set(fields) - set(names))
    if unknown:
        raise ValueError(f"declare_taps: {output.__name__} has no field(s) {unknown}; its fields are {names}")
    taps: dict[str, TapInfo] = {}
    for name, info in fields.items():
        if isinstance(info, TapInfo):
            taps[name] = info
            continue
        for i, entry in enumerate(info):
            taps[f"{name}.{i}"] = taps[f"{name}.{i - len(info)}"] = entry
    return taps


class NotComputed:
    """Stands in for an output field that a restricted forward skipped (the teacher fast path computes only the
    fields its distillation terms declare, :meth:`kd_suite.losses.base.DistillLoss.teacher_fields`).

    Indexing, iterating, ``len``, truth-testing or reading an attribute raise an error naming the field, so a term
    that reads an undeclared field fails at once instead of seeing an empty list.

    Args:
        field: the skipped field's name.
    """

    def __init__(self, field: str) -> None:
        self.field = field

    def _fail(self, *_: object) -> None:
        raise RuntimeError(
            f"teacher output field {self.field!r} was not computed: the teacher fast path runs only the fields the "
            "distillation terms declare; declare it in the term's teacher_fields() (or call "
            "teacher_forward(image, complete=True))"
        )

    __getitem__ = __iter__ = __len__ = __bool__ = _fail

    def __getattr__(self, name: str) -> None:
        if name.startswith("__"):
            raise AttributeError(name)
        self._fail()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, NotComputed) and other.field == self.field

    def __hash__(self) -> int:
        return hash(("NotComputed", self.field))

    def __repr__(self) -> str:
        return f"NotComputed({self.field!r})"


def restrict_output(output: ModelOutput, fields: frozenset[str]) -> ModelOutput:
    """``output`` with every field outside ``fields`` replaced by a :class:`NotComputed` marker (a shallow copy)."""
    skipped = {f.name: NotComputed(f.name) for f in dataclasses.fields(output) if f.init and f.name not in fields}
    return dataclasses.replace(output, **skipped)


def get_tap(output: ModelOutput, tap: str) -> Tensor:
    """Return the tensor named by ``tap`` (``"field"`` or ``"field.index"``) from a model output.

    Raises:
        KeyError: the field does not exist, is empty, or the index is out of range; the message lists valid names.
    """
    name, _, index = tap.partition(".")
    if not hasattr(output, name):
        fields = [f.name for f in dataclasses.fields(output)]
        raise KeyError(f"tap {tap!r}: {type(output).__name__} has no field {name!r}; fields are {fields}")
    value = getattr(output, name)
    if isinstance(value, NotComputed):
        value._fail()
    if index:
        if not isinstance(value, (list, tuple)):
            raise KeyError(f"tap {tap!r}: field {name!r} is not a list, drop the '.{index}' suffix")
        try:
            value = value[int(index)]
        except (ValueError, IndexError):
            raise KeyError(
                f"tap {tap!r}: field {name!r} has {len(value)} entries, index {index!r} is invalid"
            ) from None
    if value is None or isinstance(value, (list, tuple)):
        raise KeyError(f"tap {tap!r}: {type(output).__name__}.{name} is {'empty' if value is None else 'a list'} here")
    return value


def check_tap(tap_info: dict[str, TapInfo], tap: str, owner: str) -> TapInfo:
    """Look ``tap`` up in a model's declared taps, with a clear error listing what is available."""
    if tap not in tap_info:
        raise ValueError(f"{owner} does not produce tap {tap!r}; it declares {sorted(tap_info)}")
    return tap_info[tap]
