"""Frozen TorchScript parts of the teacher fast path: what is traced, equal outputs, per-shape copies, ambient
autocast."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from kd_suite.fast_teacher import MAX_SHAPES, FastPathOptions, TeacherFastPath, max_relative_error
from kd_suite.models.frozen_trace import TracedPart, trace_children
from kd_suite.outputs import ModelOutput
from kd_suite.tasks.detection import YOLOX
from kd_suite.tasks.pose import HeatmapNet
from kd_suite.teacher import freeze

RTOL = 1e-4


class Parts(nn.Module):
    """A body called once, a ModuleList iterated, a part called twice and a part called with a keyword."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.stages = nn.ModuleList(nn.Conv2d(8, 8, 3, padding=1) for _ in range(2))
        self.shared = nn.Conv2d(8, 8, 1)
        self.scaled = Scaled()

    def forward(self, x: torch.Tensor) -> ModelOutput:
        x = self.body(x)  # (B, 8, H, W)
        for stage in self.stages:
            x = torch.relu(stage(x))
        x = self.shared(self.shared(x))
        return ModelOutput(features=[x, self.scaled(x, factor=2.0)])


class Scaled(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(8, 4, 1)

    def forward(self, x: torch.Tensor, factor: float = 1.0) -> torch.Tensor:
        return factor * self.conv(x)


def frozen(model: nn.Module) -> nn.Module:
    torch.manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 1.5)
    return freeze(model).eval()


def test_parts_called_once_with_tensors_are_traced_and_the_rest_walked_into():
    model = frozen(Parts())
    image = torch.randn(2, 3, 16, 16)
    reference = model(image)
    traced = trace_children(model, image)
    assert traced == ["body", "stages.0", "stages.1", "scaled.conv"]  # not the twice-called or keyword parts
    assert isinstance(model.body, TracedPart) and isinstance(model.shared, nn.Conv2d)
    assert max_relative_error(reference, model(image)) <= RTOL


def test_the_fast_path_traces_on_cpu_and_builds_one_checked_copy_per_shape():
    teacher = frozen(YOLOX(num_classes=2, variant="nano", width=0.125))
    path = TeacherFastPath(FastPathOptions(trace=True))
    for shape in [(2, 3, 64, 96), (1, 3, 64, 96), (2, 3, 96, 64), (2, 3, 64, 96)]:
        image = torch.randn(shape)
        out = path.forward(teacher, image)
        assert max_relative_error(teacher(image), out) <= RTOL, shape
    assert len(path.traced()) == 3 and all("backbone" in t and "neck" in t for t in path.traced())
    for height in (128, 160, 192, 224):  # multi-scale inputs: only the latest MAX_SHAPES copies are kept
        path.forward(teacher, torch.randn(1, 3, height, 64))
    assert len(path.traced()) == MAX_SHAPES
    untraced = TeacherFastPath(FastPathOptions(trace=False))
    untraced.forward(teacher, torch.randn(2, 3, 64, 96))
    untraced.forward(teacher, torch.randn(1, 3, 64, 96))
    assert untraced.traced() == [[]]  # one copy serves every shape when nothing is traced


def test_an_ambient_autocast_runs_the_untraced_copy_like_the_plain_teacher():
    teacher = frozen(Parts())
    path = TeacherFastPath(FastPathOptions(trace=True))
    image = torch.randn(2, 3, 16, 16)
    path.forward(teacher, image)
    assert path.traced() == [["body", "stages.0", "stages.1", "scaled.conv"]]
    with torch.autocast("cpu", dtype=torch.bfloat16), torch.no_grad():
        plain, fast = teacher(image), path.forward(teacher, image)
    assert plain.features[0].dtype == fast.features[0].dtype == torch.bfloat16
    assert max_relative_error(plain, fast) <= 0.05  # bf16 rounding; a traced fp32 graph would not be bf16 at all


def test_by_default_only_teachers_that_declare_it_are_traced():
    path, cpu = TeacherFastPath(), torch.device("cpu")
    assert path._traces(HeatmapNet("test_resnet", num_joints=3), cpu)
    assert not path._traces(YOLOX(num_classes=2, variant="nano", width=0.125), cpu)
    assert not path._traces(HeatmapNet("test_resnet", num_joints=3), torch.device("meta"))


@pytest.mark.parametrize(
    "options", [FastPathOptions(compile=True), FastPathOptions(trace=False), FastPathOptions(trace=True, compile=True)]
)
def test_tracing_is_off_with_compile_or_when_switched_off(options):
    assert TeacherFastPath(options)._traces(HeatmapNet("test_resnet", num_joints=3), torch.device("cpu")) is False
