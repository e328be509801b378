"""Contract shared by every distillation term of the package (task terms included): registry, config parsing,
gradient routing, dtypes and errors. The cases (one per class, inputs of its own task) live in ``cases.py``."""

from __future__ import annotations

import importlib
import pkgutil
import re
from typing import Any

import pytest
import torch
from jsonargparse import ArgumentParser
from torch import Tensor

import kd_suite
import kd_suite.losses
from kd_suite.losses import LOSSES, DistillLoss
from kd_suite.outputs import ModelOutput, TapInfo, get_tap

from ..support import TinySegDistiller, TinySegNet
from .cases import ABSTRACT, CASES, Case, map_tensors, tensors
from .common import B, parsing_batch

IDS = sorted(CASES)
CLASSES = sorted({case.cls for case in CASES.values()}, key=lambda c: c.__name__)


def _all_subclasses(cls: type) -> set[type]:
    found = set()
    for sub in cls.__subclasses__():
        found |= {sub} | _all_subclasses(sub)
    return found


def _package_loss_classes() -> set[type]:
    """Every DistillLoss subclass defined in a module of kd_suite (test helpers under tests/ are not part of it)."""
    for info in pkgutil.walk_packages(kd_suite.__path__, prefix="kd_suite."):
        importlib.import_module(info.name)
    return {c for c in _all_subclasses(DistillLoss) if c.__module__.split(".")[0] == "kd_suite"}


def test_every_loss_class_of_the_package_has_a_contract_case():
    defined = {c.__name__: c for c in _package_loss_classes()}
    assert set(ABSTRACT) <= set(defined), "ABSTRACT names a class that no longer exists"
    covered = {case.cls for case in CASES.values()}
    missing = sorted(name for name, cls in defined.items() if cls not in covered and name not in ABSTRACT)
    assert not missing, f"add a contract case in tests/losses/cases.py for {missing}"
    assert covered <= set(defined.values())


def test_registry_lists_every_loss_class_of_the_losses_package():
    defined = {c for c in _package_loss_classes() if c.__module__.startswith("kd_suite.losses.")}
    assert set(LOSSES.values()) == defined
    assert all(name == cls.__name__ and name.endswith("Loss") for name, cls in LOSSES.items())
    assert set(kd_suite.losses.__all__) >= set(LOSSES) | {"LOSSES", "DistillLoss"}


# ------------------------------------------------------------------------------------------------------------ helpers
def _apply(s: ModelOutput, t: ModelOutput | list[ModelOutput], fn) -> tuple[ModelOutput, ModelOutput | list]:
    """``fn`` applied to every tensor of the student and teacher output(s)."""
    teachers = [map_tensors(o, fn) for o in t] if isinstance(t, list) else map_tensors(t, fn)
    return map_tensors(s, fn), teachers


def _inputs(case: Case, fn=lambda x: x) -> tuple[ModelOutput, ModelOutput | list[ModelOutput], object]:
    """Fresh inputs of ``case`` with ``fn`` applied to every tensor of the student and teacher outputs."""
    s, t, batch = case.make()
    return *_apply(s, t, fn), batch


def _run(loss: DistillLoss, s: ModelOutput, t: ModelOutput | list[ModelOutput], batch: Any) -> Tensor:
    """One call of the term's single signature; a case's list of outputs is its teacher followed by the guides."""
    teacher, *guides = _teachers(t)
    return loss(s, teacher, batch, guides=guides)


def _teachers(t: ModelOutput | list[ModelOutput]) -> list[ModelOutput]:
    return t if isinstance(t, list) else [t]


def _names(loss: DistillLoss) -> str:
    """A regex matching the class name or its short name (``KDLoss`` or ``kd_loss``)."""
    name = type(loss).__name__
    return f"{name}|{name.removesuffix('Loss').lower()}"


def _misspelled(tap: str) -> str:
    field, dot, index = tap.partition(".")
    return field + field[-1] + dot + index  # "logits" → "logitss", "neck.0" → "neckk.0"


# ---------------------------------------------------------------------------------------------------- config parsing
@pytest.fixture(scope="module")
def parser() -> ArgumentParser:
    p = ArgumentParser(exit_on_error=False)
    p.add_subclass_arguments(DistillLoss, "loss")
    return p


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_config_parses_base_and_own_arguments(parser, cls):
    path = f"{cls.__module__}.{cls.__name__}"
    init = {"weight": 2.5, "student_tap": "features.1", "teacher_index": 1, "schedule": {"warmup_epochs": 2}}
    cfg = parser.parse_object({"loss": {"class_path": path, "init_args": init}})
    loss = parser.instantiate(cfg).loss
    assert type(loss) is cls
    teacher_tap = "features.1" if cls in LOSSES.values() else cls(student_tap="features.1").teacher_tap
    assert (loss.weight, loss.student_tap, loss.teacher_tap, loss.teacher_index) == (2.5, "features.1", teacher_tap, 1)
    assert loss.schedule.warmup_epochs == 2
    with pytest.raises(Exception, match="temprature"):  # misspelled keys are rejected at parse time
        parser.parse_object({"loss": {"class_path": path, "init_args": {"temprature": 2}}})


def test_config_validates_literal_choices(parser):
    cfg = parser.parse_args(
        ["--loss", "kd_suite.losses.KDLoss", "--loss.temperature", "4", "--loss.reduction", "batch"]
    )
    loss = parser.instantiate(cfg).loss
    assert (loss.temperature, loss.reduction) == (4.0, "batch")
    with pytest.raises(Exception, match="reduction"):
        parser.parse_args(["--loss", "kd_suite.losses.KDLoss", "--loss.reduction", "mean"])


# ------------------------------------------------------------------------------------------- values and gradients
@pytest.mark.parametrize("case_id", IDS)
def test_gradient_reaches_student_and_adapters_only(case_id):
    case = CASES[case_id]
    loss = case.build()
    s, t, batch = _inputs(case, lambda x: x.detach().clone().requires_grad_())  # every tensor a leaf with grad
    value = _run(loss, s, t, batch)
    assert value.ndim == 0 and torch.isfinite(value)
    value.backward()
    for tap in case.grads or (loss.student_tap,):
        grad = get_tap(s, tap).grad
        assert grad is not None and grad.abs().sum() > 0, f"student tap {tap!r} must receive gradient"
    for teacher in _teachers(t):
        assert all(x.grad is None for x in tensors(teacher)), "teacher tensors must receive no gradient"
    params = dict(loss.named_parameters())
    assert all(p.grad is not None for p in params.values()), [n for n, p in params.items() if p.grad is None]
    assert all(torch.isfinite(p.grad).all() for p in params.values())


@pytest.mark.parametrize("case_id", IDS)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_inputs_give_finite_fp32_values(case_id, dtype):
    case = CASES[case_id]
    loss = case.build()
    s, t, batch = _inputs(case, lambda x: (case.half_scale * x).to(dtype))
    value = _run(loss, s, t, batch)
    assert value.dtype == torch.float32 and torch.isfinite(value)
    ref = case.build()  # the same term (same parameters, fresh generators) on the fp32 copies of the same values
    ref.load_state_dict(loss.state_dict())
    s32, t32 = _apply(s, t, torch.Tensor.float)
    # Tolerance: both runs compute in fp32 on identical values (every term casts its inputs first), so they agree to
    # rounding; a term that computed in half precision would differ by ~1e-3 (fp16) to ~1e-2 (bf16) or overflow.
    torch.testing.assert_close(value, _run(ref, s32, t32, batch), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("case_id", IDS)
def test_finite_under_bf16_autocast(case_id):
    case = CASES[case_id]
    loss = case.build()
    s, t, batch = _inputs(case, lambda x: case.half_scale * x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value = _run(loss, s, t, batch)
    assert torch.isfinite(value)


# -------------------------------------------------------------------------------------------------------------- errors
@pytest.mark.parametrize("case_id", IDS)
def test_wrong_rank_is_a_clear_value_error(case_id):
    case = CASES[case_id]
    loss = case.build()
    s, t, batch = case.make()
    with pytest.raises(ValueError, match=_names(loss)):
        _run(loss, map_tensors(s, lambda x: torch.randn(5)), t, batch)
    if case.reads_teacher:
        bad = [map_tensors(o, lambda x: torch.randn(5)) for o in _teachers(t)]
        with pytest.raises(ValueError, match=_names(loss)):
            _run(loss, s, bad if isinstance(t, list) else bad[0], batch)


@pytest.mark.parametrize("case_id", IDS)
def test_misspelled_tap_is_named_in_the_error(case_id):
    case = CASES[case_id]
    s, t, batch = case.make()
    sides = ("student_tap", "teacher_tap") if case.reads_teacher else ("student_tap",)
    for side in sides:
        loss = case.build()
        setattr(loss, side, _misspelled(getattr(loss, side)))
        with pytest.raises((KeyError, ValueError), match=re.escape(getattr(loss, side))):
            _run(loss, s, t, batch)


@pytest.mark.parametrize("case_id", [i for i in IDS if CASES[i].needs_batch])
def test_ground_truth_terms_without_a_batch_say_so(case_id):
    case = CASES[case_id]
    s, t, _ = case.make()
    with pytest.raises(ValueError, match="(?i)batch"):
        _run(case.build(), s, t, None)


@pytest.mark.parametrize("name", ["FitNetLoss", "MGDLoss", "CWDLoss", "GSKDLoss", "FGDLoss", "FSDLoss"])
def test_unbound_term_says_to_call_bind(name):
    case = CASES[name]
    loss = case.cls(**case.kwargs)
    s, t, batch = case.make()
    with pytest.raises(RuntimeError, match="bind"):
        _run(loss, s, t, batch)


@pytest.mark.parametrize("name", ["DKDLoss", "DISTLoss", "GSKDLoss"])
def test_label_dependent_terms_need_a_parsing_batch(name):
    loss = CASES[name].build()
    s, t, _ = CASES[name].make()
    with pytest.raises(ValueError, match="batch.mask"):
        _run(loss, s, t, None)


def test_channel_mismatch_without_adapter_fails_at_bind():
    with pytest.raises(ValueError, match="channels"):
        LOSSES["PKDLoss"](student_tap="embedding").bind(TapInfo(4, 8), TapInfo(6, 8))
    with pytest.raises(ValueError, match="adapter"):
        LOSSES["CWDLoss"](student_tap="embedding", adapter=False).bind(TapInfo(4, 8), TapInfo(6, 8))


def test_every_term_binds_and_trains_inside_a_distiller():
    overrides = {"PKDLoss": {"student_tap": "logits"}, "GSKDLoss": {"filter_correct": True}}
    torch.manual_seed(0)
    names = sorted(LOSSES)
    losses = {name: LOSSES[name](**(CASES[name].kwargs | overrides.get(name, {}))) for name in names}
    module = TinySegDistiller(TinySegNet(8), teacher=TinySegNet(16), losses=losses)
    batch = parsing_batch()
    image = torch.randn(B, 3, 12, 12)
    batch.image = image
    terms = module.distill_terms(module.student(image), module.teacher_forward(image), batch)
    assert set(terms) == set(names) and all(torch.isfinite(v) for v in terms.values())
    sum(terms.values()).backward()
    opt_params = {id(p) for group in module.configure_optimizers().param_groups for p in group["params"]}
    for name, loss in module.losses.items():
        assert all(id(p) in opt_params for p in loss.parameters()), f"{name} adapters must be optimised"
        assert all(p.grad is not None for p in loss.parameters()), f"{name} adapters must receive gradient"
    assert all(p.grad is None for p in module.teachers.parameters())
