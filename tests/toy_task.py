"""A 4th task on the public protocol only (which quadrant holds the bright square): a model with ``tap_info``, a batch
with ``sample_id``, ``task_loss``, ``decode``, a TaskMetric and ``render``; the Distiller does the rest."""

from dataclasses import dataclass

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader
from torchmetrics.utilities import dim_zero_cat

from kd_suite.distiller import Distiller
from kd_suite.evaluation import TaskMetric, first_occurrences, sample_ids
from kd_suite.outputs import ModelOutput, TapInfo, declare_taps


@dataclass
class QuadrantBatch:  # image (B, 3, H, W), label (B,) quadrant 0..3, sample_id (B,)
    image: Tensor
    label: Tensor
    sample_id: Tensor


@dataclass
class ClassOutput(ModelOutput):
    logits: Tensor | None = None  # (B, 4)


class QuadrantNet(nn.Module):
    def __init__(self, width: int = 8) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, width, 3, 2, 1), nn.ReLU(), nn.Conv2d(width, width, 3, 2, 1), nn.ReLU())
        self.head = nn.Linear(width * 4, 4)
        self.tap_info = declare_taps(ClassOutput, logits=TapInfo(4, 0), features=[TapInfo(width, 4)])

    def forward(self, image: Tensor) -> ClassOutput:
        feature = self.body(image)  # (B, C, H/4, W/4)
        pooled = F.adaptive_avg_pool2d(feature, 2).flatten(1)  # (B, 4C): one cell per quadrant
        return ClassOutput(features=[feature], logits=self.head(pooled))


class Accuracy(TaskMetric):
    headline = "acc"

    def __init__(self) -> None:
        super().__init__()
        self.add_state("hits", default=[], dist_reduce_fx="cat")
        self.add_state("ids", default=[], dist_reduce_fx="cat")

    def update(self, pred: Tensor, batch: QuadrantBatch) -> None:
        self.hits.append((pred == batch.label).float())
        self.ids.append(sample_ids(batch).to(self.device))

    def compute(self) -> dict[str, float]:  # each sample once (DDP pads uneven sets with repeats)
        hits, ids = dim_zero_cat(self.hits), dim_zero_cat(self.ids)
        return {"acc": float(hits[first_occurrences(ids).to(hits.device)].mean())}


class QuadrantDistiller(Distiller):
    def task_loss(self, output: ClassOutput, batch: QuadrantBatch) -> dict[str, Tensor]:
        return {"ce": F.cross_entropy(output.logits.float(), batch.label)}

    def decode(self, model: nn.Module, batch: QuadrantBatch, output: ClassOutput) -> Tensor:
        return output.logits.argmax(1)

    def build_metric(self) -> Accuracy:
        return Accuracy()

    def render(self, batch: QuadrantBatch, output: ClassOutput | None, n: int = 4) -> list[np.ndarray]:
        return list((batch.image[:n].clamp(0, 1) * 255).byte().permute(0, 2, 3, 1).cpu().numpy())


def quadrant_images(n: int, size: int, seed: int) -> QuadrantBatch:
    g = torch.Generator().manual_seed(seed)
    image, label = 0.3 * torch.rand(n, 3, size, size, generator=g), torch.randint(0, 4, (n,), generator=g)
    half = size // 2
    for i, q in enumerate(label.tolist()):
        y, x = (q // 2) * half, (q % 2) * half
        image[i, :, y + 2 : y + half - 2, x + 2 : x + half - 2] += 0.6
    return QuadrantBatch(image, label, torch.arange(n))


class QuadrantData(L.LightningDataModule):
    def __init__(self, num_train: int = 256, num_val: int = 63, size: int = 16, batch_size: int = 16) -> None:
        super().__init__()
        self.sets = {"train": quadrant_images(num_train, size, 0), "val": quadrant_images(num_val, size, 1)}
        self.batch_size = batch_size

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        items = list(zip(self.sets[split].image, self.sets[split].label, self.sets[split].sample_id))
        collate = lambda b: QuadrantBatch(*(torch.stack(x) for x in zip(*b)))  # noqa: E731
        return DataLoader(items, batch_size=self.batch_size, shuffle=shuffle, collate_fn=collate)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", False)
