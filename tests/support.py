"""Tiny models, data and a task module used by the Distiller, CLI and DDP tests (importable by class_path)."""

from __future__ import annotations

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from kd_suite.data.batch import ParsingBatch
from kd_suite.distiller import Distiller
from kd_suite.losses.base import DistillLoss, as_float
from kd_suite.models.adapters import channel_adapter
from kd_suite.outputs import ParsingOutput, TapInfo, declare_taps


class TinySegNet(nn.Module):
    """Two-conv segmenter at stride 2 with BN and dropout (so teacher-mode bugs would show)."""

    def __init__(self, width: int = 8, num_classes: int = 4) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, 2, 1), nn.BatchNorm2d(width), nn.ReLU())
        self.body = nn.Sequential(nn.Conv2d(width, width, 3, 1, 1), nn.BatchNorm2d(width), nn.ReLU(), nn.Dropout(0.2))
        self.head = nn.Conv2d(width, num_classes, 1)
        self.tap_info = declare_taps(
            ParsingOutput, logits=TapInfo(num_classes, 2), embedding=TapInfo(width, 2), features=[TapInfo(width, 2)]
        )

    def forward(self, x: Tensor) -> ParsingOutput:
        f0 = self.stem(x)  # (B, W, H/2, W/2)
        f1 = self.body(f0)
        return ParsingOutput(logits=self.head(f1), embedding=f1, features=[f0])


class PixelKL(DistillLoss):
    """Per-pixel KL between logits (test-only term)."""

    def __init__(self, temperature: float = 1.0, **kwargs) -> None:
        super().__init__(**kwargs)
        self.temperature = temperature

    def forward(self, student, teacher, batch=None, guides=()) -> Tensor:
        s, t = as_float(*self.select(student, teacher))
        tau = self.temperature
        kl = F.kl_div(F.log_softmax(s / tau, 1), F.log_softmax(t / tau, 1), log_target=True, reduction="none")
        return kl.sum(1).mean() * tau**2


class HintMSE(DistillLoss):
    """Feature MSE through a 1×1 adapter sized in bind (test-only term)."""

    def bind(self, student: TapInfo, teacher: TapInfo) -> None:
        self.adapter = channel_adapter(student.channels, teacher.channels)

    def forward(self, student, teacher, batch=None, guides=()) -> Tensor:
        s, t = as_float(*self.select(student, teacher))
        return F.mse_loss(self.adapter(s), t)


class TinySegDistiller(Distiller):
    """Cross-entropy segmentation on the tiny model."""

    def task_loss(self, output: ParsingOutput, batch: ParsingBatch) -> dict[str, Tensor]:
        logits = F.interpolate(output.logits, size=batch.mask.shape[-2:], mode="bilinear", align_corners=False)
        return {"ce": F.cross_entropy(logits.float(), batch.mask, ignore_index=255)}

    def validation_step(self, batch: ParsingBatch, batch_idx: int) -> None:
        self.log("val/loss", sum(self.task_loss(self(batch.image), batch).values()), batch_size=len(batch.image))


class _RandomSeg(Dataset):
    def __init__(self, n: int, size: int, num_classes: int, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        self.images = torch.randn(n, 3, size, size, generator=g)
        self.masks = torch.randint(0, num_classes, (n, size, size), generator=g)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        return self.images[i], self.masks[i]


def collate_seg(items: list[tuple[Tensor, Tensor]]) -> ParsingBatch:
    return ParsingBatch(image=torch.stack([a for a, _ in items]), mask=torch.stack([b for _, b in items]))


class TinySegData(L.LightningDataModule):
    """Random images and masks held in memory."""

    def __init__(self, num: int = 8, size: int = 16, num_classes: int = 4, batch_size: int = 4, seed: int = 0) -> None:
        super().__init__()
        self.num, self.size, self.num_classes, self.batch_size, self.seed = num, size, num_classes, batch_size, seed

    def train_dataloader(self) -> DataLoader:
        ds = _RandomSeg(self.num, self.size, self.num_classes, self.seed)
        return DataLoader(ds, batch_size=self.batch_size, shuffle=True, collate_fn=collate_seg)

    def val_dataloader(self) -> DataLoader:
        ds = _RandomSeg(self.batch_size, self.size, self.num_classes, self.seed + 1)
        return DataLoader(ds, batch_size=self.batch_size, collate_fn=collate_seg)


class GatheredKL(PixelKL):
    """A KL term computed under ``torch.no_grad()``, like a cross-process gather without autograd (test-only)."""

    def forward(self, student, teacher, batch=None, guides=()) -> Tensor:
        with torch.no_grad():
            return super().forward(student, teacher, batch)


class DroppedKL(PixelKL):
    """A KL term a wrapper zeroed out (test-only)."""

    def forward(self, student, teacher, batch=None, guides=()) -> Tensor:
        return 0.0 * super().forward(student, teacher, batch)


class CrashAt(L.Callback):
    """Raise at a given epoch and batch, as a crash would (resume tests)."""

    def __init__(self, epoch: int, batch: int) -> None:
        self.epoch, self.batch = epoch, batch

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.current_epoch == self.epoch and batch_idx == self.batch:
            raise RuntimeError(f"simulated crash at epoch {self.epoch}, batch {self.batch}")


class SlowSteps(L.Callback):
    """Sleep after every training batch, so a test can kill the process mid-epoch (resume tests)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        import time

        time.sleep(self.seconds)
