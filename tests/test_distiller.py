"""The Distiller's invariants: frozen teachers, adapters trained, student-only checkpoints, fp32 terms, schedules."""

from __future__ import annotations

import math

import lightning as L
import pytest
import torch
from safetensors.torch import save_file

from kd_suite.callbacks import TeacherIntegrity, TeacherIntegrityError
from kd_suite.schedules import Schedule
from kd_suite.teacher import read_state_dict

from .support import HintMSE, PixelKL, TinySegData, TinySegDistiller, TinySegNet


def _trainer(tmp_path, **kw) -> L.Trainer:
    defaults = dict(
        max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False, default_root_dir=tmp_path
    )
    return L.Trainer(**(defaults | kw))


def _kd_module(**kw) -> TinySegDistiller:
    torch.manual_seed(0)
    losses = {"kl": PixelKL(weight=0.5), "hint": HintMSE(student_tap="embedding", weight=2.0)}
    return TinySegDistiller(TinySegNet(8), teacher=TinySegNet(16), losses=losses, **kw)


def test_teacher_frozen_eval_and_bit_identical_after_fit(tmp_path):
    module = _kd_module()
    before = module.teacher_fingerprints()
    module.train()
    assert not any(m.training for m in module.teachers.modules()), "train() must keep teachers in eval"
    assert not any(p.requires_grad for p in module.teachers.parameters())
    _trainer(tmp_path, max_epochs=2).fit(module, TinySegData())
    assert module.teacher_fingerprints() == before
    assert not any(m.training for m in module.teachers.modules()), "teachers must leave fit in eval mode"
    assert all(p.grad is None for p in module.teachers.parameters())


def test_optimizer_holds_student_and_adapters_only():
    module = _kd_module()
    opt = module.configure_optimizers()
    params = {id(p) for group in opt.param_groups for p in group["params"]}
    adapter = module.losses["hint"].adapter
    assert all(id(p) in params for p in adapter.parameters()), "adapters must be trained"
    assert all(id(p) in params for p in module.student.parameters())
    assert not any(id(p) in params for p in module.teachers.parameters())
    assert adapter[0].in_channels == 8 and adapter[0].out_channels == 16  # sized from tap_info, not lazily


def test_adapters_and_student_change_teacher_does_not(tmp_path):
    module = _kd_module()
    adapter_before = module.losses["hint"].adapter[0].weight.detach().clone()
    _trainer(tmp_path, max_steps=2).fit(module, TinySegData())
    assert not torch.equal(adapter_before, module.losses["hint"].adapter[0].weight)


def test_each_term_logged_and_total_is_their_sum(tmp_path):
    module = _kd_module()
    trainer = _trainer(tmp_path, max_steps=1)
    trainer.fit(module, TinySegData(num=4))
    m = trainer.logged_metrics
    assert {"train/task/ce", "train/kd/kl", "train/kd/hint", "train/total"} <= set(m)
    assert math.isclose(
        float(m["train/total"]), float(m["train/task/ce"] + m["train/kd/kl"] + m["train/kd/hint"]), rel_tol=1e-5
    )


def test_checkpoint_has_no_teacher_weights_and_round_trips(tmp_path):
    teacher_file = tmp_path / "teacher.pt"
    torch.save(TinySegNet(16).state_dict(), teacher_file)
    module = _kd_module(teacher_ckpt=str(teacher_file))
    trainer = _trainer(tmp_path, max_steps=2)
    trainer.fit(module, TinySegData())
    ckpt = tmp_path / "student.ckpt"
    trainer.save_checkpoint(ckpt)
    raw = torch.load(ckpt, weights_only=True)
    assert not [k for k in raw["state_dict"] if k.startswith("teachers.")]
    assert any(k.startswith("losses.hint.adapter") for k in raw["state_dict"]), "adapters are checkpointed"
    meta = raw["kd_meta"]["teachers"][0]
    assert meta["ckpt"] == str(teacher_file) and len(meta["sha256"]) == 64
    assert meta["class"].endswith("TinySegNet")
    losses = {"kl": PixelKL(weight=0.5), "hint": HintMSE(student_tap="embedding", weight=2.0)}
    restored = TinySegDistiller.load_from_checkpoint(
        ckpt,
        student=TinySegNet(8),
        teacher=TinySegNet(16),
        losses=losses,
        teacher_ckpt=str(teacher_file),
        weights_only=True,
    )
    x = torch.randn(2, 3, 16, 16)
    module.eval()
    restored.eval()
    assert torch.equal(module(x).logits, restored(x).logits)
    assert restored.teacher_fingerprints() == module.teacher_fingerprints(), "teacher re-attached from its file"


@pytest.mark.parametrize("fmt", ["kd-suite", "state_dict", "safetensors", "ddp"])
def test_teacher_ckpt_formats(tmp_path, fmt):
    src = TinySegNet(16)
    torch.nn.init.constant_(src.head.bias, 0.25)
    if fmt == "kd-suite":
        teacher_run = TinySegDistiller(src)
        trainer = _trainer(tmp_path, max_steps=1)
        trainer.fit(teacher_run, TinySegData(num=4))
        path = tmp_path / "teacher.ckpt"
        trainer.save_checkpoint(path)
    elif fmt == "state_dict":
        path = tmp_path / "teacher.pth"
        torch.save(src.state_dict(), path)
    elif fmt == "safetensors":
        path = tmp_path / "teacher.safetensors"
        save_file({k: v.contiguous() for k, v in src.state_dict().items()}, str(path))
    else:
        path = tmp_path / "teacher_ddp.pth"
        torch.save({f"module.{k}": v for k, v in src.state_dict().items()}, path)
    module = TinySegDistiller(TinySegNet(8), teacher=TinySegNet(16), teacher_ckpt=str(path), losses={"kl": PixelKL()})
    for k, v in src.state_dict().items():
        assert torch.equal(module.teachers[0].state_dict()[k], v), k


def test_teacher_ckpt_errors_are_clear(tmp_path):
    with pytest.warns(UserWarning, match="missing.pt.*not found"):  # evaluation works without it ...
        module = TinySegDistiller(TinySegNet(8), teacher=TinySegNet(16), teacher_ckpt=str(tmp_path / "missing.pt"))
    assert module.teachers_loaded == [False]
    with pytest.warns(UserWarning, match="not found"):
        kd = TinySegDistiller(
            TinySegNet(8), teacher=TinySegNet(16), teacher_ckpt=str(tmp_path / "missing.pt"), losses={"kl": PixelKL()}
        )
    with pytest.raises(FileNotFoundError, match="missing.pt"):  # ... distillation does not
        kd.require_teachers()
    wrong = tmp_path / "wrong.pt"
    torch.save(TinySegNet(4).state_dict(), wrong)
    with pytest.raises(ValueError, match=r"wrong\.pt.*shape mismatch"):
        TinySegDistiller(TinySegNet(8), teacher=TinySegNet(16), teacher_ckpt=str(wrong))
    junk = tmp_path / "junk.pt"
    torch.save({"a": 1}, junk)
    with pytest.raises(ValueError, match="state dict of tensors"):
        read_state_dict(junk)


def test_configuration_errors_name_the_problem():
    with pytest.raises(ValueError, match="no teacher"):
        TinySegDistiller(TinySegNet(8), losses={"kl": PixelKL()})
    with pytest.raises(ValueError, match=r"losses.kl: student TinySegNet does not produce tap 'heatmaps'"):
        TinySegDistiller(TinySegNet(8), teacher=TinySegNet(8), losses={"kl": PixelKL(student_tap="heatmaps")})
    with pytest.raises(ValueError, match="teacher_index=1"):
        TinySegDistiller(TinySegNet(8), teacher=TinySegNet(8), losses={"kl": PixelKL(teacher_index=1)})
    with pytest.raises(ValueError, match="one per teacher"):
        TinySegDistiller(TinySegNet(8), teacher=[TinySegNet(8), TinySegNet(8)], teacher_ckpt="a.pt")


def test_multi_teacher_index_selects_the_guide(tmp_path):
    t0, t1 = TinySegNet(8), TinySegNet(8)
    module = TinySegDistiller(TinySegNet(8), teacher=[t0, t1], losses={"a": PixelKL(), "b": PixelKL(teacher_index=1)})
    batch = next(iter(TinySegData().train_dataloader()))
    out = module.student(batch.image)
    teachers = module.teacher_forward(batch.image)
    terms = module.distill_terms(out, teachers, batch)
    assert not torch.isclose(terms["a"], terms["b"]), "different guides must give different terms"
    assert torch.isclose(terms["b"], module.losses["b"](out, teachers[1], batch))


@pytest.mark.parametrize("precision", ["bf16-mixed", "16-mixed"])
def test_terms_are_fp32_and_finite_under_autocast(tmp_path, precision):
    module = _kd_module()
    seen = []

    class Spy(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            seen.append(outputs["loss"])

    module.losses["kl"].register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    _trainer(tmp_path, max_steps=2, precision=precision, callbacks=[Spy()]).fit(module, TinySegData())
    assert torch.float32 in seen
    assert all(torch.isfinite(v) for v in seen if isinstance(v, torch.Tensor))


def test_schedule_factor():
    assert Schedule().factor(3.0, 10) == 1.0
    assert Schedule(warmup_epochs=4).factor(1.0, 10) == 0.25
    assert Schedule(decay=True).factor(2.5, 10) == 0.75
    assert Schedule(off_after_epoch=2).factor(1.99, 10) == 1.0
    assert Schedule(off_after_epoch=2).factor(2.0, 10) == 0.0
    assert Schedule(warmup_epochs=2, decay=True).factor(1.0, 4) == 0.5 * 0.75
    with pytest.raises(ValueError, match="warmup_epochs"):
        Schedule(warmup_epochs=-1)


def test_scheduled_term_is_switched_off(tmp_path):
    module = _kd_module()
    module.losses["kl"].schedule = Schedule(off_after_epoch=1)
    trainer = _trainer(tmp_path, max_epochs=2, log_every_n_steps=1)
    trainer.fit(module, TinySegData(num=4))
    assert float(trainer.logged_metrics["train/kd/kl"]) == 0.0
    assert float(trainer.logged_metrics["train/kd/hint"]) > 0.0


def test_teacher_integrity_callback_catches_a_modified_teacher(tmp_path):
    module = _kd_module()

    class Corrupt(L.Callback):
        def on_train_epoch_end(self, trainer, pl_module):
            with torch.no_grad():
                pl_module.teachers[0].head.bias.add_(1.0)

    _trainer(tmp_path, max_steps=1, callbacks=[TeacherIntegrity()]).fit(module, TinySegData(num=4))  # clean: passes
    with pytest.raises(TeacherIntegrityError, match="changed"):
        _trainer(tmp_path, max_steps=1, callbacks=[Corrupt(), TeacherIntegrity()]).fit(_kd_module(), TinySegData(num=4))


def test_distillation_plan_lists_taps_and_adapters():
    plan = _kd_module().distillation_plan().splitlines()
    assert plan[0].split()[:3] == ["term", "loss", "student"]
    hint = next(line for line in plan if line.startswith("hint"))
    assert "embedding (8@/2)" in hint and "T0:embedding (16@/2)" in hint
    assert "160" in hint  # 1x1 conv 8->16 (128) + BN (32) trainable parameters
