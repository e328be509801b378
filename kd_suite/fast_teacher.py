"""The frozen-teacher fast path: a BN-folded copy of each teacher, used only for its forward pass.

A frozen teacher in eval mode is a fixed function, so it can be run as a cheaper program with the same outputs:
BatchNorms folded into their convolutions (:mod:`kd_suite.models.fold_bn`), modules rewritten into exact cheaper forms
(:mod:`kd_suite.models.frozen_rewrites`: PSP pooling without convolving its upsampled branches, channel-reducing
transposed convolutions as GEMM + col2im), restricted to the output fields the distillation terms read where the model
can skip the rest (``frozen_subset``: YOLOX drops its cls/reg towers for neck-only terms; a skipped field reads as a
raising :class:`~kd_suite.outputs.NotComputed`), channels_last memory format (oneDNN convolutions without layout
reorders on CPU, tensor-core layouts on GPU), on CPU for teachers that declare ``frozen_trace`` frozen TorchScript parts
with pre-packed weights (:mod:`kd_suite.models.frozen_trace`; one checked copy per input shape), optionally
``torch.compile`` and, on GPU, bf16/fp16 autocast. The copy is built lazily at the first forward and rebuilt whenever
the teacher's tensors move or change (replacement, storage or in-place version), and it is a plain attribute, never a
submodule: the teachers themselves, their state dict, the checkpoints and the integrity fingerprints are untouched.

At every build the copy is checked once against the plain teacher on the incoming batch; if any output tensor differs by
more than ``check_rtol`` (relative to the tensor's largest magnitude), or the outputs do not have the same fields and
shapes (over the fields the copy computes), the fast path is dropped for that teacher with a warning. Outputs are
returned in the standard contiguous layout and, under the fast path's own autocast, in fp32; an ambient autocast
(Lightning's mixed precision) applies to the copy as it does to the plain teacher.

The switch ``KD_SUITE_TEACHER_FAST_PATH=0`` (environment) turns the fast path off for every run.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import itertools
import os
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from .models.fold_bn import FoldReport, fold_batchnorm
from .models.frozen_rewrites import rewrite_frozen
from .models.frozen_trace import trace_children
from .outputs import NotComputed

__all__ = ["FastPathOptions", "TeacherFastPath", "map_tensors", "max_relative_error"]

_AUTOCAST = {"bf16": torch.bfloat16, "fp16": torch.float16}
ENV_SWITCH = "KD_SUITE_TEACHER_FAST_PATH"
MAX_SHAPES = 4  # traced copies kept per teacher (one per input shape), the oldest dropped first


@dataclass(frozen=True)
class FastPathOptions:
    """What the fast path does.

    Args:
        fold_bn: fold eval-mode BatchNorms into the preceding convolutions (exact up to float rounding).
        rewrite: replace modules that have an exact cheaper form (:func:`~kd_suite.models.frozen_rewrites.
            rewrite_frozen`; exact up to float rounding).
        prune: compute only the output fields the distillation terms declare (``DistillLoss.teacher_fields``) where
            the model offers ``frozen_subset(fields)``; exact, the computed fields are the same program.
        trace: on CPU, run the copy's parts as frozen TorchScript graphs with pre-packed oneDNN weights
            (:func:`~kd_suite.models.frozen_trace.trace_children`; exact up to float rounding). Traced graphs are
            shape-specialised, so copies are built and checked per input shape; under an ambient autocast the
            untraced copy runs. Off with ``compile`` or on other devices. ``None`` (default) traces the teachers
            whose class sets ``frozen_trace = True``, the ones measured faster traced (the ReLU ResNet heatmap
            teachers: SimpleBaseline-R50 1.1 → 1.4× at batch 1, 1.15× at 8); YOLOX (SiLU) runs ≈ 10 % slower traced.
        channels_last: run the copy and its input in channels_last memory format (default: a fixed choice, faster
            with the other steps for every shipped teacher at batch 1-8 on CPU, though alone it costs PSP-R50
            3-6 % at batch 1-2; ``benchmarks/kd_step.py --ablation``); ``None`` times both layouts on the first batch
            and keeps the faster (a timing-based choice makes a run's float results depend on load).
        inference_mode: run under ``torch.inference_mode`` and clone the outputs into normal tensors (so losses can
            save them for backward); default plain ``no_grad``, which measures the same on CPU.
        compile: ``torch.compile`` the copy with Inductor's ``freezing`` (weights folded in as constants and, on
            CPU, pre-packed for oneDNN), checked against the plain teacher like the eager copy (unless the fast
            path's own autocast is on); a one-off compile of 30-60 s on CPU. SimpleBaseline-R50 at batch 2-8 on CPU:
            plain/compiled ×1.1-1.6 across runs, not reliably faster than the traced copy.
        autocast: ``"bf16"`` or ``"fp16"`` autocast on CUDA (not exact: opt-in; ignored on CPU); outputs go back
            to fp32.
        check_rtol: tolerance of the one-off check against the plain teacher (relative to each tensor's max).
    """

    fold_bn: bool = True
    rewrite: bool = True
    prune: bool = True
    trace: bool | None = None
    channels_last: bool | None = True
    inference_mode: bool = False
    compile: bool = False
    autocast: str | None = None
    check_rtol: float = 1e-3

    def __post_init__(self) -> None:
        if self.autocast is not None and self.autocast not in _AUTOCAST:
            raise ValueError(f"teacher fast path: autocast must be one of {sorted(_AUTOCAST)} or None")


def map_tensors(value: Any, fn: Callable[[Tensor], Tensor]) -> Any:
    """Apply ``fn`` to every tensor of a model output (dataclass fields, lists, tuples, dicts), keeping the types."""
    if isinstance(value, Tensor):
        return fn(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        changes = {f.name: map_tensors(getattr(value, f.name), fn) for f in dataclasses.fields(value) if f.init}
        return dataclasses.replace(value, **changes)
    if isinstance(value, (list, tuple)):
        return type(value)(map_tensors(v, fn) for v in value)
    if isinstance(value, dict):
        return {k: map_tensors(v, fn) for k, v in value.items()}
    return value


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Leaves of a model output by path (``"features.2"``); non-tensor leaves are kept for the structure check."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        items = [(f.name, getattr(value, f.name)) for f in dataclasses.fields(value)]
    elif isinstance(value, (list, tuple)):
        items = [(str(i), v) for i, v in enumerate(value)]
    elif isinstance(value, dict):
        items = [(str(k), v) for k, v in value.items()]
    else:
        return {prefix: value}
    out: dict[str, Any] = {f"{prefix}#len": len(items)}
    for name, v in items:
        out |= _flatten(v, f"{prefix}.{name}" if prefix else name)
    return out


def max_relative_error(reference: Any, other: Any) -> float:
    """Largest ``max|a − b| / max|a|`` over all tensors of two outputs; ``inf`` when their structure differs.

    Fields that ``other`` did not compute (:class:`~kd_suite.outputs.NotComputed`) are left out of the comparison.
    """
    a, b = _flatten(reference), _flatten(other)
    for path in [k for k, v in b.items() if isinstance(v, NotComputed)]:
        a = {k: v for k, v in a.items() if k != path and not k.startswith((f"{path}.", f"{path}#"))}
        b.pop(path)
    if a.keys() != b.keys():
        return float("inf")
    worst = 0.0
    for key, x in a.items():
        y = b[key]
        if isinstance(x, Tensor) != isinstance(y, Tensor):
            return float("inf")
        if not isinstance(x, Tensor):
            if x is not y and x != y:
                return float("inf")
            continue
        if x.shape != y.shape or x.dtype.is_floating_point != y.dtype.is_floating_point:
            return float("inf")
        if x.numel() == 0:
            continue
        x, y = x.detach().double(), y.detach().double()
        scale = x.abs().max().clamp_min(1e-30)
        worst = max(worst, float((x - y).abs().max() / scale))
    return worst


def _slots(model: nn.Module) -> list[tuple[dict, str]]:
    """Where each parameter and buffer of ``model`` lives (its module's dict and key), for cheap staleness checks."""
    return [
        (d, name)
        for m in model.modules()
        for d in (m._parameters, m._buffers)
        for name, t in d.items()
        if t is not None
    ]


def _key(slots: list[tuple[dict, str]]) -> tuple:
    """Identity, storage and in-place version of every tensor: a move, reload, replacement or edit changes it."""
    return tuple((id(t), t.data_ptr(), t._version) for t in (d.get(name) for d, name in slots) if t is not None)


def _faster(runs: dict[bool, Callable[[Tensor], Any]], image: Tensor, calls: int = 3) -> bool:
    """The key of the fastest run on ``image``: one more warm-up each, then ``calls`` interleaved timings (min)."""
    sync = torch.cuda.synchronize if image.is_cuda else (lambda *_: None)
    best = dict.fromkeys(runs, float("inf"))
    for i in range(calls + 1):
        for key, run in runs.items():
            sync(image.device)
            start = time.perf_counter()
            run(image)
            sync(image.device)
            if i:
                best[key] = min(best[key], time.perf_counter() - start)
    return min(best, key=best.__getitem__)


@dataclass
class _Compiled:
    """One teacher's fast copy and the state it was built from (``runner is None``: fast path dropped)."""

    slots: list[tuple[dict, str]]
    key: tuple
    runner: Callable[[Tensor], Any] | None
    report: FoldReport | None = None
    rewrites: list[str] = dataclasses.field(default_factory=list)
    skipped: list[str] = dataclasses.field(default_factory=list)
    traced: list[str] = dataclasses.field(default_factory=list)
    channels_last: bool = False


class TeacherFastPath:
    """Runs frozen teachers through their fast copies (built lazily, one per teacher, never registered).

    Args:
        options: :class:`FastPathOptions`.
    """

    def __init__(self, options: FastPathOptions | None = None) -> None:
        self.options = options or FastPathOptions()
        self._cache: dict[tuple[int, frozenset[str] | None, tuple | None], _Compiled] = {}

    @classmethod
    def from_arg(cls, arg: bool | dict[str, Any] | FastPathOptions | None) -> TeacherFastPath | None:
        """``True``/``None`` → defaults, ``False`` → off, a dict → :class:`FastPathOptions` fields; the environment
        switch ``KD_SUITE_TEACHER_FAST_PATH=0`` turns it off whatever the argument."""
        if os.environ.get(ENV_SWITCH, "1").strip().lower() in ("0", "false", "off", "no"):
            return None
        if arg is False:
            return None
        if arg is True or arg is None:
            return cls()
        if isinstance(arg, FastPathOptions):
            return cls(arg)
        if isinstance(arg, dict):
            return cls(FastPathOptions(**arg))
        raise TypeError(f"teacher_fast_path must be a bool or a dict of FastPathOptions fields, got {arg!r}")

    def __getstate__(self) -> dict[str, Any]:
        return {"options": self.options, "_cache": {}}  # copies and pickles rebuild their fast copies

    def reports(self) -> list[FoldReport | None]:
        """The fold report of each cached teacher copy (``None`` where it was dropped), in cache order."""
        return [c.report for c in self._cache.values()]

    def rewrites(self) -> list[list[str]]:
        """The modules each cached teacher copy runs in a rewritten form (qualified names), in cache order."""
        return [list(c.rewrites) if c.runner is not None else [] for c in self._cache.values()]

    def skipped(self) -> list[list[str]]:
        """The output fields each cached teacher copy does not compute (``prune``), in cache order."""
        return [list(c.skipped) if c.runner is not None else [] for c in self._cache.values()]

    def traced(self) -> list[list[str]]:
        """The parts each cached teacher copy runs as frozen TorchScript graphs (``trace``), in cache order."""
        return [list(c.traced) if c.runner is not None else [] for c in self._cache.values()]

    def layouts(self) -> list[str]:
        """The memory format each cached copy runs in (``"plain"`` where the fast path was dropped)."""
        return [
            "plain" if c.runner is None else "channels_last" if c.channels_last else "contiguous"
            for c in self._cache.values()
        ]

    def __call__(
        self, teachers: Sequence[nn.Module], image: Tensor, fields: Sequence[frozenset[str] | None] | None = None
    ) -> list[Any]:
        """Outputs of every teacher on ``image``, through its fast copy where it passed the check.

        ``fields`` (one entry per teacher, ``None``: all) names the output fields that are needed; with ``prune``
        the others may come back as :class:`~kd_suite.outputs.NotComputed`.
        """
        fields = [None] * len(teachers) if fields is None else list(fields)
        return [self.forward(t, image, f) for t, f in zip(teachers, fields, strict=True)]

    def forward(self, teacher: nn.Module, image: Tensor, fields: frozenset[str] | None = None) -> Any:
        fields = fields if self.options.prune else None
        cache_key = (id(teacher), fields, self._shape_key(teacher, image))
        entry = self._cache.get(cache_key)
        if entry is None or _key(entry.slots) != entry.key:
            entry = self._cache[cache_key] = self._build(teacher, image, fields)
            shapes = [k for k in self._cache if k[:2] == cache_key[:2] and k != cache_key]
            for old in shapes[: max(0, len(shapes) + 1 - MAX_SHAPES)]:
                del self._cache[old]  # multi-scale inputs: keep the latest traced copies only
        if entry.runner is None:
            with torch.no_grad():
                return teacher(image)
        return entry.runner(image)

    def _traces(self, teacher: nn.Module, device: torch.device) -> bool:
        opts = self.options
        wanted = getattr(teacher, "frozen_trace", False) is True if opts.trace is None else opts.trace
        return wanted and not opts.compile and device.type == "cpu"

    def _shape_key(self, teacher: nn.Module, image: Tensor) -> tuple | None:
        """Traced copies are specialised to one input: they are cached per shape, dtype and device."""
        return (tuple(image.shape), image.dtype, image.device) if self._traces(teacher, image.device) else None

    # ------------------------------------------------------------------ building
    def _build(self, teacher: nn.Module, image: Tensor, fields: frozenset[str] | None) -> _Compiled:
        opts = self.options
        slots = _slots(teacher)
        entry = _Compiled(slots, _key(slots), None)
        if teacher.training or any(p.requires_grad for p in teacher.parameters()):
            return entry  # not frozen: only a frozen eval-mode teacher is a fixed function
        folded = copy.deepcopy(teacher)
        entry.report = fold_batchnorm(folded) if opts.fold_bn else None
        entry.rewrites = rewrite_frozen(folded) if opts.rewrite else []
        layouts = [False, True] if opts.channels_last is None else [opts.channels_last]
        candidates = {}
        for cl in layouts:
            model = _restricted(copy.deepcopy(folded).to(memory_format=torch.channels_last) if cl else folded, fields)
            eager = None  # the untraced copy, run under an ambient autocast (traced graphs would ignore it)
            if self._traces(teacher, image.device):
                eager, model = model, copy.deepcopy(model)
                x = image.contiguous(memory_format=torch.channels_last) if cl else image
                with torch.autocast(image.device.type, enabled=False):
                    entry.traced = trace_children(model, x)
            runner = self._runner(model, image.device, cl, compiled=False, autocast=False, eager=eager)
            candidates[cl] = (model, eager, runner)
        with torch.no_grad(), torch.autocast(image.device.type, enabled=False):  # checked in the weights' dtype
            reference = teacher(image)
            errors = {}
            for cl, (_, _, run) in candidates.items():
                out = run(image)
                entry.skipped = _skipped(out)
                errors[cl] = max_relative_error(reference, out)
        dtype = next(itertools.chain(teacher.parameters(), [image]), image).dtype
        tolerance = max(opts.check_rtol, 8 * torch.finfo(dtype).eps) if dtype.is_floating_point else opts.check_rtol
        passed = [cl for cl, error in errors.items() if error <= tolerance]
        if not passed:
            warnings.warn(
                f"teacher fast path disabled for {type(teacher).__name__}: its outputs differ from the plain "
                f"teacher's by {min(errors.values()):.3g} (relative, tolerance {tolerance:g}); running the plain "
                "teacher",
                stacklevel=3,
            )
            return entry
        if len(passed) > 1:
            with torch.no_grad(), torch.autocast(image.device.type, enabled=False):
                entry.channels_last = _faster({cl: candidates[cl][2] for cl in passed}, image)
        else:
            entry.channels_last = passed[0]
        model, eager, _ = candidates[entry.channels_last]
        entry.runner = self._runner(
            model, image.device, entry.channels_last, compiled=opts.compile, autocast=True, eager=eager
        )
        if opts.compile and self._own_autocast(image.device) is None:  # under its own autocast: not exact, opt-in
            with torch.no_grad(), torch.autocast(image.device.type, enabled=False):
                error = max_relative_error(reference, entry.runner(image))  # compiles, then checks the program
            if error > tolerance:
                warnings.warn(
                    f"teacher fast path: the compiled copy of {type(teacher).__name__} differs from the plain teacher "
                    f"by {error:.3g} (relative, tolerance {tolerance:g}); running the copy uncompiled",
                    stacklevel=3,
                )
                entry.runner = self._runner(
                    model, image.device, entry.channels_last, compiled=False, autocast=True, eager=eager
                )
        return entry

    def _own_autocast(self, device: torch.device) -> torch.dtype | None:
        """The dtype of the fast path's own autocast on ``device`` (CUDA only; ``None``: off)."""
        return _AUTOCAST.get(self.options.autocast) if device.type == "cuda" else None

    def _runner(
        self,
        fast: nn.Module,
        device: torch.device,
        channels_last: bool,
        compiled: bool,
        autocast: bool,
        eager: nn.Module | None = None,
    ) -> Callable[[Tensor], Any]:
        opts = self.options
        module = torch.compile(fast, options={"freezing": True}) if compiled else fast  # frozen: weights are constants
        dtype = self._own_autocast(device) if autocast else None

        def run(image: Tensor) -> Any:
            x = image.contiguous(memory_format=torch.channels_last) if channels_last else image
            grad_mode = torch.inference_mode() if opts.inference_mode else torch.no_grad()
            # an ambient autocast (Lightning's mixed precision) applies as to the plain teacher: traced graphs would
            # ignore it, so the untraced copy runs then
            ambient = eager is not None and torch.is_autocast_enabled(device.type)
            with grad_mode, torch.autocast(device.type, dtype=dtype) if dtype else contextlib.nullcontext():
                out = (eager if ambient else module)(x)
            return map_tensors(out, lambda t: _finish(t, to_fp32=dtype is not None, copy=opts.inference_mode))

        return run


def _restricted(model: nn.Module, fields: frozenset[str] | None) -> nn.Module:
    """``model``'s ``frozen_subset(fields)`` where it offers one that skips something, else ``model`` itself."""
    subset = getattr(model, "frozen_subset", None)
    if fields is None or not callable(subset):
        return model
    return subset(fields) or model


def _skipped(output: Any) -> list[str]:
    """The fields of a model output that are :class:`~kd_suite.outputs.NotComputed`."""
    if not dataclasses.is_dataclass(output) or isinstance(output, type):
        return []
    return [f.name for f in dataclasses.fields(output) if isinstance(getattr(output, f.name), NotComputed)]


def _finish(t: Tensor, to_fp32: bool, copy: bool) -> Tensor:
    """Standard layout (and fp32 after autocast); ``copy`` turns an inference tensor into a normal one."""
    if to_fp32 and t.is_floating_point():
        t = t.float()
    if copy:
        return t.clone(memory_format=torch.contiguous_format)
    return t.contiguous()
