"""kd-suite calibrate: gradient norms against plain autograd, suggested weights reach their share, the command."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml
from torch import Tensor

from kd_suite.calibration import calibrate, calibrated_weights
from kd_suite.cli import KDCLI, main
from kd_suite.data.batch import ParsingBatch
from kd_suite.losses.base import DistillLoss
from kd_suite.schedules import Schedule
from kd_suite.tools.calibrate import parse_shares

from .support import HintMSE, PixelKL, TinySegDistiller, TinySegNet

REPO = Path(__file__).resolve().parents[1]
TINY = str(REPO / "tests" / "configs" / "tiny_kd.yaml")


def _task_ce(student, batch: ParsingBatch) -> Tensor:
    logits = F.interpolate(student.logits, size=batch.mask.shape[-2:], mode="bilinear", align_corners=False)
    return F.cross_entropy(logits, batch.mask)  # TinySegDistiller's task loss, written out


class TaskCopy(DistillLoss):
    """A term equal to the task's cross-entropy: its gradient is the task gradient, so its ratio is its weight."""

    def forward(self, student, teacher, batch=None, guides=()) -> Tensor:
        return _task_ce(student, batch)


class NoisyKL(PixelKL):
    """PixelKL times a factor drawn from a private generator (replay test)."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.generator = torch.Generator().manual_seed(7)

    def forward(self, student, teacher, batch=None, guides=()) -> Tensor:
        return (1.0 + torch.rand((), generator=self.generator)) * super().forward(student, teacher, batch)


def tiny_module(**extra: DistillLoss) -> TinySegDistiller:
    torch.manual_seed(0)
    losses = {
        "kl": PixelKL(temperature=2.0, weight=0.5),
        "hint": HintMSE(student_tap="embedding", weight=1.0, schedule=Schedule(warmup_epochs=1.0)),
        "copy": TaskCopy(weight=0.25),
        **extra,
    }
    return TinySegDistiller(TinySegNet(8), TinySegNet(16), losses=losses, teacher_fast_path=False)


def tiny_batches(n: int = 2) -> list[ParsingBatch]:
    g = torch.Generator().manual_seed(1)
    return [
        ParsingBatch(image=torch.randn(4, 3, 16, 16, generator=g), mask=torch.randint(0, 4, (4, 16, 16), generator=g))
        for _ in range(n)
    ]


def by_hand(module: TinySegDistiller, batch: ParsingBatch, seed: int) -> dict[str, tuple[float, float]]:
    """Value and student-gradient norm of the task loss and each raw term, with plain autograd."""
    module.train()
    torch.manual_seed(seed)  # the same dropout masks as the tool's step for this batch
    out = module.student(batch.image)
    with torch.no_grad():
        teacher = module.teachers[0](batch.image)
    ce = _task_ce(out, batch)
    log_s, log_t = F.log_softmax(out.logits / 2.0, 1), F.log_softmax(teacher.logits / 2.0, 1)
    kl = (log_t.exp() * (log_t - log_s)).sum(1).mean() * 4.0
    hint = (module.losses["hint"].adapter(out.embedding) - teacher.embedding).pow(2).mean()
    params = list(module.student.parameters())

    def norm(loss: Tensor) -> float:
        grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
        return math.sqrt(sum(float(g.pow(2).sum()) for g in grads if g is not None))

    return {name: (float(v.detach()), norm(v)) for name, v in {"task": ce, "kl": kl, "hint": hint, "copy": ce}.items()}


def test_gradient_norms_match_plain_autograd_and_a_copy_of_the_task_has_ratio_equal_to_its_weight():
    module, batches = tiny_module(), tiny_batches()
    buffers = {k: b.clone() for k, b in module.named_buffers()}
    rng = torch.get_rng_state()
    module.eval()
    result = calibrate(module, batches, seed=5)
    # calibrating leaves the module, its mode, its weights and the global RNG as they were
    assert not module.training and torch.equal(torch.get_rng_state(), rng)
    assert all(torch.equal(b, buffers[k]) for k, b in module.named_buffers())
    assert module.losses["kl"].weight == 0.5 and module.losses["hint"].schedule == Schedule(warmup_epochs=1.0)

    expected = [by_hand(module, batch, seed=5 + b) for b, batch in enumerate(batches)]
    for name, measure in {"task": result.task, **result.terms}.items():
        value, grad = torch.tensor([e[name] for e in expected], dtype=torch.float64).T  # (N,) each
        torch.testing.assert_close(measure.value, value, rtol=1e-5, atol=0)
        torch.testing.assert_close(measure.grad_norm, grad, rtol=1e-5, atol=0)
    kl = result.terms["kl"]
    assert kl.factor == 0.5 and result.terms["hint"].schedule == 1.0  # schedules at full strength by default
    torch.testing.assert_close(kl.weighted_grad_norm, 0.5 * kl.grad_norm)
    torch.testing.assert_close(result.ratio("kl"), 0.5 * kl.grad_norm / result.task.grad_norm)
    # analytically: the copy's weighted gradient is 0.25 × the task gradient in every batch
    torch.testing.assert_close(result.ratio("copy"), torch.full((2,), 0.25, dtype=torch.float64), rtol=1e-5, atol=0)
    assert calibrated_weights(result, 0.5)["copy"] == pytest.approx(0.5, rel=1e-5)
    assert result.task_parts == {}  # one task term: no components listed


def test_suggested_weights_give_the_target_share_when_applied():
    module, batches = tiny_module(noisy=NoisyKL(weight=2.0)), tiny_batches(3)
    before = module.losses["noisy"].generator.get_state()
    result = calibrate(module, batches, seed=3)
    assert torch.equal(module.losses["noisy"].generator.get_state(), before)  # private generators restored too
    shares = {"kl": 0.3, "hint": 0.5, "copy": 0.7, "noisy": 0.2}
    weights = calibrated_weights(result, shares)
    assert set(weights) == set(shares)
    for name, weight in weights.items():
        module.losses[name].weight = weight
    again = calibrate(module, batches, seed=3)
    for name, share in shares.items():
        assert again.share(name) == pytest.approx(share, rel=1e-4)
        torch.testing.assert_close(again.terms[name].grad_norm, result.terms[name].grad_norm, rtol=1e-6, atol=0)
    assert calibrated_weights(result, {"kl": 0.3}).keys() == {"kl"}
    with pytest.raises(ValueError, match="unknown term"):
        calibrated_weights(result, {"nope": 0.3})


def test_schedules_are_evaluated_at_the_given_epoch():
    module, batches = tiny_module(), tiny_batches(1)
    half = calibrate(module, batches, epoch=0.5, max_epochs=4)
    full = calibrate(module, batches)
    hint = half.terms["hint"]
    assert hint.schedule == pytest.approx(0.5) and half.terms["kl"].schedule == 1.0
    torch.testing.assert_close(hint.weighted_grad_norm, 0.5 * full.terms["hint"].grad_norm)
    w_half, w_full = calibrated_weights(half)["hint"], calibrated_weights(full)["hint"]
    assert w_half == pytest.approx(2 * w_full, rel=1e-6)  # twice the weight at half the warm-up
    assert "hint" not in calibrated_weights(calibrate(module, batches, epoch=0.0))  # switched off: no suggestion


def test_shares_from_the_command_line():
    assert parse_shares(None, ["a", "b"]) == {"a": 0.5, "b": 0.5}
    assert parse_shares(["0.2", "b=0.3"], ["a", "b"]) == {"a": 0.2, "b": 0.3}
    assert parse_shares(["a=0.1,b=0.4"], ["a", "b"]) == {"a": 0.1, "b": 0.4}
    for bad, message in ((["c=0.1"], "unknown term"), (["x"], "expected a number"), (["-1"], "positive")):
        with pytest.raises(ValueError, match=message):
            parse_shares(bad, ["a", "b"])


def test_command_prints_the_table_and_overrides_and_writes_json(tmp_path, capsys):
    out = tmp_path / "calib.json"
    argv = ["calibrate", "--config", TINY, "--batches", "2", "--share", "kl=0.3", "--out", str(out)]
    assert main([*argv, "--data.init_args.batch_size=2"]) == 0
    text = capsys.readouterr().out
    for piece in ("weighted ‖g‖", "ratio", "task", "kl", "hint", "command-line overrides", "YAML"):
        assert piece in text
    record = json.loads(out.read_text())
    assert {"definition", "unit"} <= record.keys() and record["batches"] == 2
    assert record["overrides"] == ["--data.init_args.batch_size=2"]
    assert record["terms"]["kl"]["target_share"] == 0.3 and record["terms"]["hint"]["target_share"] == 0.5
    assert len(record["terms"]["kl"]["ratio"]["per_batch"]) == 2
    weights = record["suggested_weights"]
    assert set(weights) == {"kl", "hint"} and record["command_line"] in text
    assert f"--model.init_args.losses.kl.init_args.weight={weights['kl']:.4g}" in text
    # the YAML block, as a second config, sets the new weights and keeps everything else of the terms
    snippet = tmp_path / "weights.yaml"
    snippet.write_text(record["yaml"])
    cli = KDCLI(args=["--config", TINY, "--config", str(snippet), "--trainer.logger=false"], run=False)
    losses = cli.model.losses
    assert losses["kl"].weight == pytest.approx(weights["kl"], rel=1e-3) and losses["kl"].temperature == 2.0
    assert losses["hint"].weight == pytest.approx(weights["hint"], rel=1e-3)
    assert losses["hint"].schedule == Schedule(warmup_epochs=1.0)


def test_clear_errors_without_terms_and_without_the_teacher_file(tmp_path, capsys):
    config = yaml.safe_load(Path(TINY).read_text())
    del config["model"]["init_args"]["losses"]
    plain = tmp_path / "plain.yaml"
    plain.write_text(yaml.safe_dump(config))
    assert main(["calibrate", "--config", str(plain)]) == 2
    err = capsys.readouterr().err
    assert "no distillation terms" in err and "Traceback" not in err

    missing = tmp_path / "teacher.ckpt"
    assert main(["calibrate", "--config", TINY, f"--model.init_args.teacher_ckpt={missing}"]) == 1
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("kd-suite calibrate:")]
    assert len(lines) == 1 and str(missing) in lines[0] and "not found" in lines[0]
    assert "Traceback" not in err and "UserWarning" not in err
