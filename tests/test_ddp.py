"""Two-process DDP (gloo, CPU) fit of a tiny Distiller under the run guards: teachers untouched, students in sync,
terms finite."""

from __future__ import annotations

import json
import math

import lightning as L
import torch

from kd_suite.guards import default_callbacks

from .support import HintMSE, PixelKL, TinySegData, TinySegDistiller, TinySegNet


class _RecordPerRank(L.Callback):
    def __init__(self, out_dir: str) -> None:
        self.out_dir = out_dir

    def on_train_end(self, trainer: L.Trainer, pl_module: TinySegDistiller) -> None:
        from kd_suite.teacher import fingerprint

        record = {
            "teacher": pl_module.teacher_fingerprints(),
            "student": fingerprint(pl_module.student),
            "adapter": fingerprint(pl_module.losses["hint"]),
            "metrics": {k: float(v) for k, v in trainer.callback_metrics.items()},
            "teacher_training": any(m.training for m in pl_module.teachers.modules()),
        }
        with open(f"{self.out_dir}/rank{trainer.global_rank}.json", "w") as f:
            json.dump(record, f)


def test_two_process_ddp_fit_keeps_teacher_and_syncs_student(tmp_path):
    torch.manual_seed(0)
    module = TinySegDistiller(
        TinySegNet(8),
        teacher=TinySegNet(16),
        losses={"kl": PixelKL(weight=0.5), "hint": HintMSE(student_tap="embedding")},
    )
    before = module.teacher_fingerprints()
    trainer = L.Trainer(
        accelerator="cpu",
        devices=2,
        strategy="ddp_spawn",
        max_epochs=2,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[*default_callbacks(), _RecordPerRank(str(tmp_path))],  # the CLI's guards run on every rank
    )
    trainer.fit(module, TinySegData(num=16, batch_size=2))
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    for rec in ranks:
        assert rec["teacher"] == before, "teacher changed under DDP"
        assert not rec["teacher_training"]
        assert all(math.isfinite(v) for v in rec["metrics"].values())
        assert {"train/kd/kl", "train/kd/hint", "train/task/ce"} <= set(rec["metrics"])
    assert ranks[0]["student"] == ranks[1]["student"], "DDP must keep student replicas identical"
    assert ranks[0]["adapter"] == ranks[1]["adapter"], "adapters are synchronised like the student"
