"""Run guards: divergence stops with one message and leaves no non-finite checkpoint; dead KD terms are reported."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import lightning as L
import pytest
import torch
import yaml

from kd_suite.cli import KDCLI, main
from kd_suite.guards import DivergenceError, DivergenceGuard, DivergenceWarning
from kd_suite.liveness import KDLiveness, KDLivenessWarning
from kd_suite.schedules import Schedule

from .support import DroppedKL, GatheredKL, HintMSE, PixelKL, TinySegData, TinySegDistiller, TinySegNet

REPO = Path(__file__).resolve().parents[1]
TINY = str(REPO / "tests" / "configs" / "tiny_kd.yaml")


def _checkpointing_config(tmp_path: Path) -> str:
    """A second config: save a checkpoint after every step and a last.ckpt."""
    init = {"dirpath": str(tmp_path / "ckpt"), "every_n_train_steps": 1, "save_last": True}
    callback = {"class_path": "lightning.pytorch.callbacks.ModelCheckpoint", "init_args": init}
    path = tmp_path / "ckpt.yaml"
    path.write_text(yaml.safe_dump({"trainer": {"callbacks": [callback], "default_root_dir": str(tmp_path)}}))
    return str(path)


def _all_finite(ckpt: Path) -> bool:
    state = torch.load(ckpt, weights_only=True)["state_dict"]
    return all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())


def test_huge_kd_weight_stops_at_the_first_step_naming_the_term(tmp_path, capsys):
    code = main(["fit", "--config", TINY, "--config", _checkpointing_config(tmp_path),
                 "--model.init_args.losses.kl.init_args.weight=1e39"])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert code == 1
    assert "training diverged at epoch 0, step 0" in err and "train/kd/kl" in err
    assert "losses.kl.init_args.weight" in err and len(err.splitlines()) <= 3
    assert not list(tmp_path.rglob("*.ckpt")), "no checkpoint may be written once the loss is non-finite"


def test_huge_learning_rate_stops_and_every_written_checkpoint_is_finite(tmp_path, capsys):
    code = main(["fit", "--config", TINY, "--config", _checkpointing_config(tmp_path), "--trainer.max_epochs=6",
                 "--model.init_args.optimizer.init_args.lr=1e8"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 1 and "training diverged" in err and "learning rate" in err
    ckpts = list(tmp_path.rglob("*.ckpt"))
    assert all(_all_finite(c) for c in ckpts), [c.name for c in ckpts if not _all_finite(c)]


def _module(**losses) -> TinySegDistiller:
    torch.manual_seed(0)
    return TinySegDistiller(TinySegNet(8), teacher=TinySegNet(16), losses=losses or None)


def _trainer(*callbacks: L.Callback, steps: int = 2) -> L.Trainer:
    return L.Trainer(accelerator="cpu", max_steps=steps, logger=False, enable_checkpointing=False,
                     enable_progress_bar=False, enable_model_summary=False, callbacks=list(callbacks))  # fmt: skip


def test_no_checkpoint_with_nonfinite_weights_is_ever_written(tmp_path):
    trainer = _trainer(DivergenceGuard(), steps=1)
    module = _module(kl=PixelKL())
    trainer.fit(module, TinySegData())
    trainer.save_checkpoint(tmp_path / "ok.ckpt")
    with torch.no_grad():
        module.student.head.weight[0, 0] = math.nan
    with pytest.raises(DivergenceError, match=r"refusing to write a checkpoint.*student\.head\.weight"):
        trainer.save_checkpoint(tmp_path / "last.ckpt")
    assert (tmp_path / "ok.ckpt").is_file() and not (tmp_path / "last.ckpt").exists()


def test_a_term_that_dwarfs_the_task_loss_warns():
    with pytest.warns(DivergenceWarning, match=r"train/kd/kl has been more than 1000x the task loss for 2 steps"):
        _trainer(DivergenceGuard(patience=2), steps=3).fit(_module(kl=PixelKL(weight=1e7)), TinySegData())


def test_kd_liveness_names_a_term_without_gradient_and_a_zero_term():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        module = _module(gathered=GatheredKL(), dropped=DroppedKL(), kl=PixelKL())
        _trainer(KDLiveness(), steps=4).fit(module, TinySegData())
    messages = [str(w.message) for w in caught if issubclass(w.category, KDLivenessWarning)]
    assert len(messages) == 2, messages
    assert any("'gathered' on rank 0" in m and "torch.no_grad()" in m for m in messages)
    assert any("'dropped' on rank 0" in m and "exactly 0" in m for m in messages)


def test_kd_liveness_is_silent_for_live_terms_and_checks_warmed_up_terms_later():
    liveness = KDLiveness()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        module = _module(kl=PixelKL(), hint=HintMSE(student_tap="embedding", schedule=Schedule(warmup_epochs=1.0)))
        _trainer(liveness, steps=3).fit(module, TinySegData())
    assert not [w for w in caught if issubclass(w.category, KDLivenessWarning)]
    assert not liveness._pending  # the warm-up term (0 at step 0) was checked once its weight became non-zero


def test_the_cli_adds_the_guards_even_when_the_config_lists_callbacks_and_can_opt_out():
    cli = KDCLI(args=["--config", TINY, "--trainer.callbacks=[]"], run=False)
    names = [type(c).__name__ for c in cli.trainer.callbacks]
    assert {"ConsistencyCheck", "DivergenceGuard", "KDLiveness"} <= set(names)
    cli = KDCLI(args=["--config", TINY, "--guards=false"], run=False)
    assert not {"ConsistencyCheck", "DivergenceGuard", "KDLiveness"} & {type(c).__name__ for c in cli.trainer.callbacks}
