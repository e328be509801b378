"""The fast path computes only the teacher fields the distillation terms read: declarations, the restricted YOLOX
forward against the whole one, a loud error for an undeclared read, and unchanged KD terms."""

from __future__ import annotations

import copy
import pickle

import pytest
import torch

from kd_suite.data.batch import DetectionBatch
from kd_suite.fast_teacher import FastPathOptions, TeacherFastPath, map_tensors
from kd_suite.losses import CWDLoss
from kd_suite.losses.base import DistillLoss
from kd_suite.losses.gskd import GSKDLoss
from kd_suite.outputs import DetectionOutput, NotComputed, get_tap, restrict_output
from kd_suite.tasks.detection import YOLOX, DetectionDistiller, FGDLoss, FSDLoss
from kd_suite.tasks.pose.distilpose import CoordDistillLoss
from kd_suite.tasks.pose.dskd import DenseGuidedHeatmapLoss
from kd_suite.teacher import freeze

RTOL = 1e-4


def yolox(seed: int, width: float = 0.125) -> YOLOX:
    torch.manual_seed(seed)
    return YOLOX(num_classes=3, variant="nano", depth=0.33, width=width)


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / a.abs().max())


def batch(image: torch.Tensor) -> DetectionBatch:
    boxes = torch.tensor([[[8.0, 10.0, 60.0, 70.0], [70.0, 20.0, 120.0, 100.0]]]).repeat(len(image), 1, 1)
    return DetectionBatch(image=image, boxes=boxes, labels=torch.tensor([[0, 2]]).repeat(len(image), 1))


def test_terms_declare_the_fields_they_read():
    assert FSDLoss(student_tap="neck.0").teacher_fields() == {"neck"}
    assert CWDLoss(student_tap="cls.1").teacher_fields() == {"cls"}
    assert GSKDLoss().teacher_fields() == {"embedding", "logits"}
    assert GSKDLoss(filter_correct=False).teacher_fields() == {"embedding"}
    assert CoordDistillLoss().teacher_fields() in ({"coords"}, {"coords", "scores"})
    assert CoordDistillLoss(confidence=True).teacher_fields() == {"coords", "scores"}
    assert DenseGuidedHeatmapLoss.uses_guides and DenseGuidedHeatmapLoss().teacher_fields() is None


def test_distiller_unions_the_fields_per_teacher_and_guides_read_everything():
    terms = {"fsd": FSDLoss(student_tap="neck.0"), "kd": CWDLoss(student_tap="cls.0")}
    module = DetectionDistiller(yolox(0), teacher=[yolox(1), yolox(2)], losses=terms, log_images=0)
    assert module.teacher_fields() == [{"neck", "cls"}, frozenset()]
    terms = {"fsd": FSDLoss(student_tap="neck.0", teacher_index=1)}
    module = DetectionDistiller(yolox(0), teacher=[yolox(1), yolox(2)], losses=terms, log_images=0)
    assert module.teacher_fields() == [frozenset(), {"neck"}]
    module.losses["dense"] = DenseGuidedHeatmapLoss()  # reads every guide: no teacher can skip anything
    assert module.teacher_fields() == [None, None]


@pytest.mark.parametrize(
    "fields, skipped",
    [({"neck"}, ["cls", "reg", "obj"]), ({"neck", "cls"}, ["reg", "obj"]), ({"obj"}, ["cls", "reg"]), (None, [])],
)
def test_restricted_yolox_equals_the_whole_teacher_on_what_it_computes(fields, skipped):
    teacher = freeze(yolox(1)).eval()
    image = torch.randn(2, 3, 96, 128)
    path = TeacherFastPath()
    out = path.forward(teacher, image, None if fields is None else frozenset(fields))
    assert path.skipped() == [skipped]
    reference = teacher(image)
    for name in ("features", "neck", "cls", "reg", "obj"):
        value = getattr(out, name)
        if name in skipped:
            assert isinstance(value, NotComputed)
            continue
        assert len(value) == 3
        for a, b in zip(getattr(reference, name), value):
            assert a.shape == b.shape and relative(a, b) <= RTOL, name


def test_the_restricted_forward_skips_the_towers():
    teacher = freeze(yolox(1, width=0.25)).eval()
    calls = []
    for tower in [*teacher.head.cls_convs, *teacher.head.reg_convs]:
        tower.register_forward_hook(lambda *_: calls.append(1))
    sub = teacher.frozen_subset(frozenset({"neck"}))
    sub(torch.randn(1, 3, 64, 64))
    assert calls == []
    assert teacher.frozen_subset(frozenset({"cls", "reg"})) is None  # nothing to skip: the whole forward runs
    teacher(torch.randn(1, 3, 64, 64))
    assert len(calls) == 6


def test_a_skipped_field_raises_naming_it():
    output = restrict_output(DetectionOutput(neck=[torch.zeros(1)], cls=[torch.zeros(1)]), frozenset({"neck"}))
    marker = output.cls
    for use in (lambda: marker[0], lambda: list(marker), lambda: len(marker), lambda: bool(marker)):
        with pytest.raises(RuntimeError, match="'cls' was not computed.*teacher_fields"):
            use()
    with pytest.raises(RuntimeError, match="'cls' was not computed"):
        marker.shape  # noqa: B018
    with pytest.raises(RuntimeError, match="'cls' was not computed"):
        get_tap(output, "cls.0")
    assert get_tap(output, "neck.0").shape == (1,)
    # the marker survives what the fast path and Lightning do to outputs
    assert map_tensors(output, lambda t: t + 1).cls == marker
    assert copy.deepcopy(marker) == marker and pickle.loads(pickle.dumps(marker)) == marker


class ReadsUndeclared(DistillLoss):
    """Declares ``neck`` (its tap) but also reads the teacher's class logits."""

    def forward(self, student, teacher, batch=None, guides=()):
        return (self.select(student, teacher)[0].mean() - teacher.cls[0].mean()) ** 2


def test_an_undeclared_read_fails_loudly_and_a_declaration_fixes_it():
    image = torch.randn(1, 3, 64, 64)
    term = ReadsUndeclared(student_tap="neck.0")
    module = DetectionDistiller(yolox(0), teacher=yolox(1), losses={"bad": term}, log_images=0)
    with pytest.raises(RuntimeError, match="'cls' was not computed"):
        module.distill_terms(module.student(image), module.teacher_forward(image), batch(image))
    term.teacher_fields = lambda: frozenset({"neck", "cls"})
    terms = module.distill_terms(module.student(image), module.teacher_forward(image), batch(image))
    assert torch.isfinite(terms["bad"])


def test_kd_terms_are_unchanged_by_the_restriction():
    image = torch.randn(2, 3, 96, 96)
    terms = {f"fsd{i}": FSDLoss(student_tap=f"neck.{i}") for i in range(3)} | {"fgd": FGDLoss(student_tap="neck.1")}
    module = DetectionDistiller(yolox(0, width=0.25), teacher=yolox(1), losses=terms, log_images=0)
    student = module.student(image)
    restricted = module.teacher_forward(image)
    assert module.teacher_fast.skipped() == [["cls", "reg", "obj"]]
    complete = module.teacher_forward(image, complete=True)
    assert all(len(getattr(complete[0], f)) == 3 for f in ("cls", "reg", "obj"))
    module.teacher_fast = None
    plain = module.teacher_forward(image)
    a = module.distill_terms(student, restricted, batch(image))
    b = module.distill_terms(student, plain, batch(image))
    assert a.keys() == b.keys() and all(float(b[k].detach()) > 0 for k in b)
    for k in a:
        assert float(a[k].detach()) == pytest.approx(float(b[k].detach()), rel=1e-4), k


def test_the_restriction_can_be_switched_off():
    teacher = freeze(yolox(1)).eval()
    path = TeacherFastPath(FastPathOptions(prune=False))
    out = path.forward(teacher, torch.randn(1, 3, 64, 64), frozenset({"neck"}))
    assert path.skipped() == [[]] and len(out.cls) == 3
