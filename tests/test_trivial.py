"""Trivial predictors: exact on hand-made data, and the real ones sit where expected on synthetic data."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from kd_suite.data.batch import MissingTargetError, ParsingBatch, PoseBatch
from kd_suite.metrics.trivial import majority_class_miou, mean_pose_pckh, trivial_score


class FakeModule:
    """The slice of a DataModule the trivial predictors read: splits, datasets of items, a collate."""

    train_split, val_split, input_size = "train", "val", (8, 8)

    def __init__(self, items: dict[str, list], collate) -> None:
        self.items, self.collate = items, collate

    def dataset(self, split: str, train: bool) -> list:
        return self.items[split]

    def split_dataset(self, train: bool) -> list:
        return self.items[self.train_split if train else self.val_split]


def test_majority_class_is_exact_on_a_fixed_layout():
    left = torch.zeros(8, 8, dtype=torch.long)
    left[:, 4:] = 1  # class 0 on the left half, 1 on the right
    noisy = left.clone()
    noisy[0, 0] = 1  # one vote against, outvoted
    train = [noisy, left, left]
    val_gt = np.kron(left.numpy(), np.ones((2, 2), np.uint8))  # original size 16×16, same layout

    def collate(masks):
        if isinstance(masks[0], np.ndarray):  # val: the original-size GT
            originals = [torch.from_numpy(m.astype(np.int64)) for m in masks]
            return ParsingBatch(image=torch.zeros(len(masks), 3, 8, 8), mask=left[None], orig_masks=originals)
        return ParsingBatch(image=torch.zeros(len(masks), 3, 8, 8), mask=torch.stack(masks))

    dm = FakeModule({"train": train, "val": [val_gt]}, collate)
    assert majority_class_miou(dm, num_classes=2) == pytest.approx(100.0)
    assert majority_class_miou(dm, num_classes=4) == pytest.approx(50.0)  # absent classes score 0 (LIP protocol)


def test_mean_pose_scores_the_mean_and_only_the_mean():
    rng = np.random.default_rng(0)
    base = torch.tensor(rng.uniform(1, 7, (16, 2)), dtype=torch.float32)  # one pose in crop pixels

    def item(kp):
        return SimpleNamespace(keypoints=kp, head_size=1.0)

    def collate(items):
        kp = torch.stack([i.keypoints for i in items])  # (B, 16, 2)
        eye = torch.tensor([[1.0, 0, 0], [0, 1.0, 0]]).expand(len(items), 2, 3)  # crop = original pixels
        return PoseBatch(
            image=torch.zeros(len(items), 3, 8, 8),
            keypoints=kp,
            visible=torch.ones(len(items), 16),
            heatmaps=torch.zeros(len(items), 16, 2, 2),
            inv_affine=eye,
            head_size=torch.tensor([i.head_size for i in items]),  # (B,)
        )

    offset = torch.tensor([0.3, 0.0])
    train = [item(base + offset), item(base - offset)]  # mean = base
    dm = FakeModule({"train": train, "val": [item(base), item(base + 2.0)]}, collate)
    # val pose 0 is the mean (all joints within 0.5·head = 0.5 px); val pose 1 is 2.8 px away (none)
    assert mean_pose_pckh(dm) == pytest.approx(50.0)


def test_trivial_scores_name_a_missing_target():
    pose = PoseBatch(torch.zeros(1, 3, 8, 8), torch.zeros(1, 16, 2), torch.ones(1, 16), torch.zeros(1, 16, 2, 2),
                     torch.eye(2, 3)[None])  # fmt: skip
    with pytest.raises(MissingTargetError, match=r"PoseBatch\.head_size .* MPIIDataModule"):
        mean_pose_pckh(FakeModule({"train": [0], "val": [0]}, lambda items: pose))
    parsing = ParsingBatch(image=torch.zeros(1, 3, 8, 8), mask=torch.zeros(1, 8, 8, dtype=torch.long))
    with pytest.raises(MissingTargetError, match=r"ParsingBatch\.orig_masks .* LIPDataModule"):
        majority_class_miou(FakeModule({"train": [0], "val": [0]}, lambda items: parsing), num_classes=2)


def test_trivial_scores_on_synthetic_data(tmp_path):
    from kd_suite.data.lip import LIPDataModule
    from kd_suite.data.mpii import MPIIDataModule
    from kd_suite.data.synth import synthesize

    synthesize(tmp_path, 12, 6, size=(112, 112), seed=5, formats=("mpii", "lip"), workers=0, progress=False)
    pose = trivial_score("pose", MPIIDataModule(root=str(tmp_path / "mpii"), input_size=(64, 64), num_workers=0))
    parsing = trivial_score("parsing", LIPDataModule(root=str(tmp_path / "LIP"), input_size=(64, 64), num_workers=0))
    assert 3.0 < pose < 60.0 and 1.0 < parsing < 30.0, (pose, parsing)  # above nothing, far below a model
    assert trivial_score("detection", SimpleNamespace(setup=lambda stage: None)) == 0.0
    with pytest.raises(ValueError, match="unknown task"):
        trivial_score("depth", SimpleNamespace(setup=lambda stage: None))
