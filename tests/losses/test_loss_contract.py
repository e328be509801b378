"""Contract shared by every distillation term: registry, config parsing, gradient routing, dtypes, errors."""

from __future__ import annotations

import importlib
import pkgutil

import pytest
import torch
from jsonargparse import ArgumentParser

import kd_suite.losses
from kd_suite.losses import LOSSES, DistillLoss
from kd_suite.outputs import ParsingOutput, TapInfo, get_tap

from ..support import TinySegDistiller, TinySegNet
from .common import CASES, STUDENT_TAPS, TEACHER_TAPS, B, build, outputs, parsing_batch

NAMES = sorted(LOSSES)


def _all_subclasses(cls: type) -> set[type]:
    found = set()
    for sub in cls.__subclasses__():
        found |= {sub} | _all_subclasses(sub)
    return found


def test_registry_lists_every_loss_class_of_the_package():
    for info in pkgutil.iter_modules(kd_suite.losses.__path__):
        importlib.import_module(f"kd_suite.losses.{info.name}")
    defined = {c for c in _all_subclasses(DistillLoss) if c.__module__.startswith("kd_suite.losses.")}
    assert set(LOSSES.values()) == defined
    assert all(name == cls.__name__ and name.endswith("Loss") for name, cls in LOSSES.items())
    assert set(CASES) == set(LOSSES), "every loss needs a contract case"
    assert set(kd_suite.losses.__all__) >= set(LOSSES) | {"LOSSES", "DistillLoss"}


@pytest.fixture(scope="module")
def parser() -> ArgumentParser:
    p = ArgumentParser(exit_on_error=False)
    p.add_subclass_arguments(DistillLoss, "loss")
    return p


@pytest.mark.parametrize("name", NAMES)
def test_config_parses_base_and_own_arguments(parser, name):
    init = {"weight": 2.5, "student_tap": "features.1", "teacher_index": 1, "schedule": {"warmup_epochs": 2}}
    cfg = parser.parse_object({"loss": {"class_path": f"kd_suite.losses.{name}", "init_args": init}})
    loss = parser.instantiate(cfg).loss
    assert type(loss) is LOSSES[name]
    assert (loss.weight, loss.student_tap, loss.teacher_tap, loss.teacher_index) == (2.5, "features.1", "features.1", 1)
    assert loss.schedule.warmup_epochs == 2
    with pytest.raises(Exception, match="temprature"):  # misspelled keys are rejected at parse time
        parser.parse_object({"loss": {"class_path": f"kd_suite.losses.{name}", "init_args": {"temprature": 2}}})


def test_config_validates_literal_choices(parser):
    cfg = parser.parse_args(
        ["--loss", "kd_suite.losses.KDLoss", "--loss.temperature", "4", "--loss.reduction", "batch"]
    )
    loss = parser.instantiate(cfg).loss
    assert (loss.temperature, loss.reduction) == (4.0, "batch")
    with pytest.raises(Exception, match="reduction"):
        parser.parse_args(["--loss", "kd_suite.losses.KDLoss", "--loss.reduction", "mean"])


@pytest.mark.parametrize("name", NAMES)
def test_gradient_reaches_student_and_adapters_only(name):
    loss = build(name)
    s, t = outputs()
    value = loss(s, t, parsing_batch())
    assert value.ndim == 0 and torch.isfinite(value)
    value.backward()
    s_tap = get_tap(s, loss.student_tap)
    assert s_tap.grad is not None and s_tap.grad.abs().sum() > 0, "student tap must receive gradient"
    for tensor in (t.logits, t.embedding, *t.features):
        assert tensor.grad is None, "teacher tensors must receive no gradient"
    params = dict(loss.named_parameters())
    assert all(p.grad is not None for p in params.values()), [n for n, p in params.items() if p.grad is None]
    assert all(torch.isfinite(p.grad).all() for p in params.values())


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_inputs_give_finite_fp32_values(name, dtype):
    loss = build(name)
    s, t = outputs(dtype=dtype, scale=30.0, grad=False)  # large logits overflow half-precision exp
    value = loss(s, t, parsing_batch())
    assert value.dtype == torch.float32 and torch.isfinite(value)
    ref = loss.__class__(**CASES[name])  # the same term on the fp32 copies of the same values
    ref.bind(STUDENT_TAPS[ref.student_tap], TEACHER_TAPS[ref.teacher_tap])
    ref.load_state_dict(loss.state_dict())
    s32 = ParsingOutput(logits=s.logits.float(), embedding=s.embedding.float(), features=[s.features[0].float()])
    t32 = ParsingOutput(logits=t.logits.float(), embedding=t.embedding.float(), features=[t.features[0].float()])
    torch.testing.assert_close(value, ref(s32, t32, parsing_batch()), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_finite_under_bf16_autocast(name):
    loss = build(name)
    s, t = outputs(scale=30.0, grad=False)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value = loss(s, t, parsing_batch())
    assert torch.isfinite(value)


@pytest.mark.parametrize("name", NAMES)
def test_wrong_rank_is_a_clear_value_error(name):
    loss = build(name)
    s, t = outputs(grad=False)
    bad = ParsingOutput(logits=torch.randn(5), embedding=torch.randn(5), features=[torch.randn(5)])
    with pytest.raises(ValueError, match=type(loss).__name__.removesuffix("Loss").lower() + "|" + type(loss).__name__):
        loss(bad, t, parsing_batch())


@pytest.mark.parametrize("name", ["FitNetLoss", "MGDLoss", "CWDLoss", "GSKDLoss"])
def test_unbound_term_says_to_call_bind(name):
    loss = LOSSES[name](**CASES[name])
    s, t = outputs(grad=False)
    with pytest.raises(RuntimeError, match="bind"):
        loss(s, t, parsing_batch())


@pytest.mark.parametrize("name", ["DKDLoss", "DISTLoss", "GSKDLoss"])
def test_label_dependent_terms_need_a_parsing_batch(name):
    loss = build(name)
    s, t = outputs(grad=False)
    with pytest.raises(ValueError, match="batch.mask"):
        loss(s, t, None)


def test_channel_mismatch_without_adapter_fails_at_bind():
    with pytest.raises(ValueError, match="channels"):
        LOSSES["PKDLoss"](student_tap="embedding").bind(TapInfo(4, 8), TapInfo(6, 8))
    with pytest.raises(ValueError, match="adapter"):
        LOSSES["CWDLoss"](student_tap="embedding", adapter=False).bind(TapInfo(4, 8), TapInfo(6, 8))


def test_every_term_binds_and_trains_inside_a_distiller():
    overrides = {"PKDLoss": {"student_tap": "logits"}, "GSKDLoss": {"filter_correct": True}}
    torch.manual_seed(0)
    losses = {name: LOSSES[name](**(CASES[name] | overrides.get(name, {}))) for name in NAMES}
    module = TinySegDistiller(TinySegNet(8), teacher=TinySegNet(16), losses=losses)
    batch = parsing_batch()
    image = torch.randn(B, 3, 12, 12)
    batch.image = image
    terms = module.distill_terms(module.student(image), module.teacher_forward(image), batch)
    assert set(terms) == set(NAMES) and all(torch.isfinite(v) for v in terms.values())
    sum(terms.values()).backward()
    opt_params = {id(p) for group in module.configure_optimizers().param_groups for p in group["params"]}
    for name, loss in module.losses.items():
        assert all(id(p) in opt_params for p in loss.parameters()), f"{name} adapters must be optimised"
        assert all(p.grad is not None for p in loss.parameters()), f"{name} adapters must receive gradient"
    assert all(p.grad is None for p in module.teachers.parameters())
