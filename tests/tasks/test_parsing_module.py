"""ParsingDistiller on a tiny in-memory dataset: task loss, LIP-protocol validation, teacher mIoU, PNG export, W&B."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import lightning as L
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.loggers.logger import Logger
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from kd_suite.consistency import ConsistencyError
from kd_suite.data.batch import MissingTargetError, ParsingBatch
from kd_suite.data.facts import DatasetFacts
from kd_suite.data.lip import collate_parsing
from kd_suite.data.schema import LIP_CLASSES, LIP_FLIP_PAIRS
from kd_suite.metrics.parsing import ParsingScores, evaluate_files
from kd_suite.outputs import ParsingOutput
from kd_suite.tasks.parsing import ParsingDistiller, ParsingNet, PSPParsingNet, flip_logits, write_predictions

from .test_parsing_metric import numpy_scores

K, SIZE = 20, 32


class TinyLIP(Dataset):
    """Random images at SIZE², original masks of other sizes (with ignore pixels), like LIP val after resizing.

    Items have LIPDataset's layout, so :func:`collate_parsing` stacks them; ``originals`` keeps each id's (H0, W0)
    uint8 GT for the independent evaluations below.
    """

    def __init__(self, n: int = 6, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.items, self.originals = [], {}
        for i in range(n):
            h, w = (int(v) for v in rng.integers(20, 48, size=2))
            orig = rng.integers(0, K, size=(h, w)).astype(np.uint8)
            orig[rng.random((h, w)) < 0.1] = 255
            rows = np.arange(SIZE) * h // SIZE
            cols = np.arange(SIZE) * w // SIZE
            mask = torch.from_numpy(orig[rows][:, cols].astype(np.int64))  # nearest resize to the input
            image = torch.from_numpy(rng.standard_normal((3, SIZE, SIZE)).astype(np.float32))
            target = torch.from_numpy(orig.astype(np.int64))
            self.items.append({"image": image, "mask": mask, "id": f"img{i}", "orig_size": (h, w), "orig_mask": target,
                               "meta": {}})  # fmt: skip
            self.originals[f"img{i}"] = orig

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        return self.items[i]


def loader(n: int = 6, batch_size: int = 3) -> DataLoader:
    return DataLoader(TinyLIP(n), batch_size=batch_size, collate_fn=collate_parsing)


def student() -> ParsingNet:
    torch.manual_seed(0)
    return ParsingNet("test_resnet", K, context_channels=8, fusion_channels=(8, 8, 8), head_channels=8)


def teacher() -> PSPParsingNet:
    torch.manual_seed(1)
    return PSPParsingNet("test_resnet", K, psp_channels=8, head_channels=8)


class Recorder(Logger):
    """Keeps every log_metrics call."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[dict[str, float]] = []

    name, version = "rec", 0

    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        pass

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self.calls.append(dict(metrics))


def trainer(**kwargs: Any) -> L.Trainer:
    kwargs.setdefault("logger", False)
    opts = {"enable_progress_bar": False, "enable_model_summary": False, "enable_checkpointing": False}
    return L.Trainer(accelerator="cpu", devices=1, **opts, **kwargs)


def reference_scores(model: torch.nn.Module, data: DataLoader, flip: bool = False) -> dict:
    """Independent evaluation: eval logits, upsample each to its original size, argmax, numpy scores against the
    dataset's own original masks (looked up by id)."""
    model.eval()
    preds, gts = [], []
    with torch.no_grad():
        for batch in data:
            logits = model(batch.image).logits
            if flip:
                logits = (logits + flip_logits(model(batch.image.flip(-1)).logits)) / 2
            for lg, sid in zip(logits, batch.ids):
                orig = data.dataset.originals[sid]
                up = F.interpolate(lg[None], size=orig.shape, mode="bilinear", align_corners=False)
                preds.append(up[0].argmax(0).numpy())
                gts.append(orig)
    return numpy_scores(preds, gts, K)


def manual_ce(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    up = F.interpolate(logits, size=mask.shape[-2:], mode="bilinear", align_corners=False)
    logp = up.log_softmax(1).permute(0, 2, 3, 1).reshape(-1, K)
    labels = mask.reshape(-1)
    keep = labels != 255
    return -logp[keep].gather(1, labels[keep, None]).mean()


def test_dataset_facts_name_the_classes_and_a_class_count_mismatch_stops_the_run():
    module = ParsingDistiller(student(), flip_test=True)
    assert module.class_names is None and module.flip_pairs is None, "nothing is guessed from the class count"
    with pytest.raises(ValueError, match="flip_pairs"):
        module.predict_logits(torch.zeros(1, 3, 32, 32))
    module.link_data(DatasetFacts("parsing", LIP_CLASSES, LIP_FLIP_PAIRS))
    assert module.class_names == LIP_CLASSES and module.flip_pairs == LIP_FLIP_PAIRS
    with pytest.raises(ConsistencyError, match="predicts 20 classes.*labels 3"):
        ParsingDistiller(student()).link_data(DatasetFacts("parsing", ("a", "b", "c")))


def test_task_loss_is_ce_plus_weighted_aux():
    module = ParsingDistiller(student(), aux_weight=0.4)
    batch = next(iter(loader()))
    out = module.student.train()(batch.image)
    terms = module.task_loss(out, batch)
    assert set(terms) == {"ce", "aux"} and len(out.aux_logits) == 2
    torch.testing.assert_close(terms["ce"], manual_ce(out.logits, batch.mask))
    torch.testing.assert_close(terms["aux"], 0.4 * sum(manual_ce(a, batch.mask) for a in out.aux_logits))


@pytest.mark.parametrize("flip", [False, True])
def test_validation_follows_the_lip_protocol(flip):
    # a bare loader publishes no dataset facts: the config names the classes and the flip pairs itself
    module = ParsingDistiller(student(), flip_test=flip, flip_pairs=LIP_FLIP_PAIRS, class_names=LIP_CLASSES)
    result = trainer().validate(module, loader(), verbose=False)[0]
    want = reference_scores(module.student, loader(), flip)
    assert result["val/mIoU"] == pytest.approx(100 * want["mIoU"], abs=1e-4)  # logged in percent
    assert result["val/pixel_acc"] == pytest.approx(100 * want["pixel_acc"], abs=1e-4)
    assert result["val/mean_acc"] == pytest.approx(100 * want["mean_acc"], abs=1e-4)
    assert result["val/iou/Right-shoe"] == pytest.approx(100 * want["iou"][19], abs=1e-4)
    assert module.results["student"]["per_class_iou"]["Hat"] == pytest.approx(want["iou"][1], abs=1e-9)


def test_teacher_miou_is_logged_once_and_correct():
    module = ParsingDistiller(student(), teacher=teacher(), optimizer=lambda p: torch.optim.SGD(p, lr=0.0))
    rec = Recorder()
    trainer(logger=rec, max_epochs=2, limit_train_batches=1, num_sanity_val_steps=1).fit(module, loader(), loader())
    logged = [c["val/teacher_mIoU"] for c in rec.calls if "val/teacher_mIoU" in c]
    assert len(logged) == 1  # first real validation only (not the sanity check, not epoch 2)
    assert logged[0] == pytest.approx(100 * reference_scores(module.teachers[0], loader())["mIoU"], abs=1e-4)
    assert sum("val/mIoU" in c for c in rec.calls) == 2


def test_written_predictions_score_like_validation(tmp_path):
    module = ParsingDistiller(student())
    result = trainer().validate(module, loader(), verbose=False)[0]
    assert write_predictions(module, loader(), tmp_path / "pred") == 6
    (tmp_path / "gt").mkdir()
    for sid, orig in TinyLIP().originals.items():
        Image.fromarray(orig, mode="L").save(tmp_path / "gt" / f"{sid}.png")
    scores = evaluate_files(tmp_path / "gt", tmp_path / "pred")
    assert scores["num_images"] == 6
    assert 100 * scores["mIoU"] == pytest.approx(result["val/mIoU"], abs=1e-4)
    assert 100 * scores["pixel_acc"] == pytest.approx(result["val/pixel_acc"], abs=1e-4)


class FakeRun:
    def __init__(self) -> None:
        self.logged: list[dict] = []
        self.config = SimpleNamespace(update=lambda *a, **k: None)

    def log(self, data: dict) -> None:
        self.logged.append(data)


def test_wandb_pictures_show_gt_teacher_and_student_side_by_side(tmp_path):
    logger = WandbLogger(save_dir=str(tmp_path), offline=True)
    logger._experiment = FakeRun()  # no wandb run: record what would be sent
    module = ParsingDistiller(student(), teacher=teacher(), log_images=2)
    trainer(logger=logger).validate(module, loader(), verbose=False)
    sent = [d["val/predictions"] for d in logger._experiment.logged if "val/predictions" in d]
    assert len(sent) == 1 and len(sent[0]) == 2  # once per validation epoch, first batch only, log_images samples
    assert sent[0][0]._caption == "epoch 0: ground truth | teacher | student"
    assert sent[0][0].image.size == (3 * SIZE, SIZE)  # three renderings side by side


def test_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="predicts 20 classes but num_classes=7"):
        ParsingDistiller(student(), num_classes=7)
    with pytest.raises(ValueError, match="flip pairs"):
        ParsingDistiller(student(), flip_pairs=((14, 25),))
    item = {"image": torch.zeros(3, SIZE, SIZE), "mask": torch.zeros(SIZE, SIZE, dtype=torch.long), "id": "x",
            "orig_size": (SIZE, SIZE), "orig_mask": None, "meta": {}}  # fmt: skip
    with pytest.raises(MissingTargetError, match=r"ParsingBatch\.orig_masks is not set .* LIPDataModule"):
        trainer().validate(ParsingDistiller(student()), DataLoader([item], collate_fn=collate_parsing), verbose=False)
    batch = ParsingBatch(torch.zeros(1, 3, SIZE, SIZE), torch.zeros(1, SIZE, SIZE, dtype=torch.long))
    with pytest.raises(MissingTargetError, match=r"ParsingBatch\.orig_sizes"):
        ParsingDistiller(student()).decode(student(), batch, None)
    with pytest.raises(MissingTargetError, match=r"ParsingBatch\.orig_masks"):
        ParsingScores(K).update([torch.zeros(SIZE, SIZE, dtype=torch.long)], batch)
    with pytest.raises(MissingTargetError, match=r"ParsingBatch\.ids"):
        write_predictions(ParsingDistiller(student()), [batch], tmp_path)


def test_render_overlays_prediction_or_ground_truth():
    module = ParsingDistiller(student())
    batch = next(iter(loader()))
    batch.mask[batch.mask == 255] = 0
    perfect = ParsingOutput(logits=F.one_hot(batch.mask, K).permute(0, 3, 1, 2).float() * 10)  # (B, K, H, W)
    gt, pred = module.render(batch, None, n=2), module.render(batch, perfect, n=2)
    assert len(gt) == 2 and gt[0].shape == (SIZE, SIZE, 3) and gt[0].dtype == np.uint8
    for a, b in zip(gt, pred):
        np.testing.assert_array_equal(a, b)
    other = module.render(batch, module.student.eval()(batch.image), n=2)
    assert any((a != b).any() for a, b in zip(gt, other))
