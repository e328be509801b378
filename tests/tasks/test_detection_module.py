"""DetectionDistiller on synthetic VOC data: validation against an independent evaluation, teacher mAP, W&B boxes,
the L1 switch and clear errors."""

from __future__ import annotations

import copy
import dataclasses
import json
from types import SimpleNamespace
from typing import Any

import lightning as L
import numpy as np
import pytest
import torch
from lightning.pytorch.loggers import Logger, WandbLogger

from kd_suite.consistency import ConsistencyError
from kd_suite.data.batch import DetectionBatch, MissingTargetError
from kd_suite.data.facts import DatasetFacts
from kd_suite.data.voc import VOCDataModule, read_voc_annotation
from kd_suite.metrics.detection import ImageRecord, evaluate_voc_files, voc_evaluate
from kd_suite.tasks.detection import YOLOX, DetectionDistiller
from kd_suite.tasks.detection.decode import postprocess
from kd_suite.tasks.detection.scores import DetectionScores

CLASSES = ["standing", "fallen"]


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models gain nothing from a second thread, and a shared CPU makes two threads several times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def voc_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("det") / "VOCdevkit"
    VOCDataModule(str(root), CLASSES, synth_if_missing=True, synth_num_train=4, synth_num_val=6).prepare_data()
    return root


def datamodule(root, **kwargs: Any) -> VOCDataModule:
    kwargs = {"input_size": (128, 128), "batch_size": 4, "num_workers": 0, "pin_memory": False, **kwargs}
    return VOCDataModule(str(root), CLASSES, **kwargs)


def model(seed: int = 0, width: float = 0.125, log_size: float = 0.0) -> YOLOX:
    torch.manual_seed(seed)
    net = YOLOX(2, "s", depth=0.33, width=width)
    with torch.no_grad():
        for conv in net.head.reg_preds:  # box size e^log_size strides: an untrained net then overlaps some people
            conv.bias[2:] = log_size
    return net


class Recorder(Logger):
    name, version = "rec", 0

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[dict[str, float]] = []

    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        pass

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self.calls.append(dict(metrics))


def trainer(**kwargs: Any) -> L.Trainer:
    kwargs.setdefault("logger", False)
    opts = {"enable_progress_bar": False, "enable_model_summary": False, "enable_checkpointing": False}
    return L.Trainer(accelerator="cpu", devices=1, **opts, **kwargs)


def test_validation_matches_an_independent_evaluation_and_the_results_file(voc_root, tmp_path):
    module = DetectionDistiller(model(log_size=1.5), score_thresh=0.0, max_det=300, log_images=0)
    dm = datamodule(voc_root)
    result = trainer().validate(module, dm, verbose=False)[0]
    # independent: eval forward per image, boxes back through the letterbox by hand, GT straight from the XMLs
    net = model(log_size=1.5).eval()
    records, results = [], []
    with torch.no_grad():
        for batch in dm.val_dataloader():
            for i, det in enumerate(postprocess(net(batch.image), net.strides, 0.0, 0.65, 300)):
                image_id, scale, pad = batch.image_ids[i], batch.scale[i].item(), batch.pad[i].tolist()
                boxes = ((det["boxes"] - torch.tensor(pad * 2)) / scale).numpy()
                ann = read_voc_annotation(voc_root / "VOC2007" / "Annotations" / f"{image_id}.xml", CLASSES)
                h, w = ann["size"]
                boxes = np.clip(boxes, 0, [w, h, w, h])
                scores, labels = det["scores"].numpy(), det["labels"].numpy()
                records.append(ImageRecord(image_id, (h, w), boxes, scores, labels, ann["boxes"], ann["labels"],
                                           ann["difficult"]))  # fmt: skip
                results += [{"image_id": image_id, "category_id": int(k), "score": float(s),
                             "bbox": [float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])]}
                            for b, s, k in zip(boxes, det["scores"], det["labels"])]  # fmt: skip
    expected = voc_evaluate(records, CLASSES)
    assert expected["mAP50"] > 0  # random weights and a low threshold still hit a few people
    assert result["val/mAP50"] == pytest.approx(100 * expected["mAP50"], abs=1e-4)  # logged in percent
    assert result["val/mAP50_allpoint"] == pytest.approx(100 * expected["mAP50_allpoint"], abs=1e-4)
    assert module.results["student"]["per_class"]["standing"]["num_gt"] == expected["per_class"]["standing"]["num_gt"]
    pred = tmp_path / "pred.json"
    pred.write_text(json.dumps(results))
    files = evaluate_voc_files(voc_root, pred, split="test", class_names=CLASSES)
    assert 100 * files["mAP50"] == pytest.approx(result["val/mAP50"], abs=1e-4)


def test_gt_of_the_records_is_the_annotation_in_original_pixels(voc_root):
    dm = datamodule(voc_root)
    dm.setup("validate")
    scores = DetectionScores("voc", tuple(CLASSES))
    for batch in dm.val_dataloader():
        empty = [{"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "labels": torch.zeros(0, dtype=torch.long)}]
        scores.update(empty * len(batch.image_ids), batch)
    evaluator = scores.evaluator
    assert sorted(evaluator.records) == sorted(dm.val_ids)
    for key, rec in evaluator.records.items():
        ann = read_voc_annotation(voc_root / "VOC2007" / "Annotations" / f"{key}.xml", CLASSES)
        assert np.allclose(rec.gt_boxes, ann["boxes"], atol=1e-3) and (rec.gt_labels == ann["labels"]).all()
        assert rec.size == tuple(ann["size"])
        np.testing.assert_array_equal(rec.gt_difficult, ann["difficult"])
    assert any(rec.gt_difficult.any() for rec in evaluator.records.values())  # the flags reach the evaluator


def test_predict_step_returns_original_image_boxes(voc_root):
    module = DetectionDistiller(model(log_size=1.5), score_thresh=0.0)
    dm = datamodule(voc_root)
    dm.setup("predict")
    first = trainer().predict(module, dm.val_dataloader())[0][0]
    assert set(first) == {"image_id", "boxes", "scores", "labels"} and first["boxes"].shape[1] == 4
    assert first["boxes"].min() >= 0 and first["boxes"].max() <= 256  # clipped to the 256 × 256 scene
    assert first["boxes"][:, 2:].max() > 128  # beyond the 128-pixel input: mapped back to the original image


def test_teacher_map_is_logged_once_and_matches_an_identical_student(voc_root):
    student = model(log_size=1.5)
    module = DetectionDistiller(student, teacher=copy.deepcopy(student), score_thresh=0.0, max_det=300, log_images=0)
    rec = Recorder()
    t = trainer(logger=rec)
    dm = datamodule(voc_root)
    first = t.validate(module, dm, verbose=False)[0]
    second = t.validate(module, dm, verbose=False)[0]
    assert first["val/teacher_mAP50"] == pytest.approx(first["val/mAP50"]) and first["val/mAP50"] > 0
    assert "val/teacher_mAP50" not in second and second["val/mAP50"] == pytest.approx(first["val/mAP50"])
    assert sum("val/teacher_mAP50" in c for c in rec.calls) == 1


def test_l1_term_only_in_the_last_epochs(voc_root):
    module = DetectionDistiller(model(), l1_last_epochs=1, log_images=0)
    rec = Recorder()
    t = trainer(logger=rec, max_epochs=2, limit_train_batches=1, limit_val_batches=0, log_every_n_steps=1)
    t.fit(module, datamodule(voc_root))
    steps = [c for c in rec.calls if "train/task/iou" in c]
    assert len(steps) == 2 and "train/task/l1" not in steps[0] and "train/task/l1" in steps[1]
    assert not DetectionDistiller(model()).use_l1  # no trainer: off


class FakeRun:
    def __init__(self) -> None:
        self.logged: list[dict] = []
        self.config = SimpleNamespace(update=lambda *a, **k: None)

    def log(self, data: dict, **kwargs: Any) -> None:
        self.logged.append(data)


def test_wandb_pictures_show_gt_teacher_and_student_boxes(voc_root, tmp_path):
    logger = WandbLogger(save_dir=str(tmp_path), offline=True)
    logger._experiment = FakeRun()  # no wandb run: record what would be sent
    module = DetectionDistiller(model(), teacher=model(1, 0.25), score_thresh=0.001, log_images=2)
    trainer(logger=logger).validate(module, datamodule(voc_root), verbose=False)
    sent = [d["val/predictions"] for d in logger._experiment.logged if "val/predictions" in d]
    assert len(sent) == 1 and len(sent[0]) == 2  # first batch only, log_images images
    assert sent[0][0]._caption == "epoch 0: ground truth | teacher | student"
    width, height = sent[0][0].image.size
    assert width == 3 * height  # three square letterboxed renderings side by side


def test_linked_facts_name_the_classes_and_a_count_mismatch_stops_the_run():
    module = DetectionDistiller(model())
    n = module.num_classes
    assert module.label_names() == tuple(map(str, range(n))), "no names guessed from the class count"
    module.link_data(DatasetFacts("detection", tuple(f"c{i}" for i in range(n))))
    assert module.label_names() == tuple(f"c{i}" for i in range(n))
    with pytest.raises(ConsistencyError, match=rf"predicts {n} classes.*labels {n + 1} classes.*to {n + 1}"):
        DetectionDistiller(model()).link_data(DatasetFacts("detection", tuple(map(str, range(n + 1)))))


def test_clear_errors(voc_root):
    with pytest.raises(ValueError, match="class_names lists 3 names"):
        DetectionDistiller(model(), class_names=("a", "b", "c"))
    with pytest.raises(ValueError, match="teacher 0 predicts 5 classes"):
        DetectionDistiller(model(), teacher=YOLOX(5, "s", depth=0.33, width=0.125))
    with pytest.raises(ValueError, match="metric"):
        DetectionDistiller(model(), metric="map")  # type: ignore[arg-type]


def test_evaluation_names_a_missing_letterbox_field(voc_root):
    dm = datamodule(voc_root)
    dm.setup("validate")
    batch = next(iter(dm.val_dataloader()))
    empty = [{"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "labels": torch.zeros(0, dtype=torch.long)}]
    no_pad = dataclasses.replace(batch, pad=None)
    with pytest.raises(MissingTargetError, match=r"DetectionBatch\.pad is not set .* VOCDataModule"):
        DetectionScores("voc", tuple(CLASSES)).update(empty * len(batch.image_ids), no_pad)
    with pytest.raises(MissingTargetError, match=r"DetectionBatch\.scale"):
        DetectionDistiller(model()).predict_step(dataclasses.replace(batch, scale=None), 0)
    with pytest.raises(MissingTargetError, match=r"DetectionBatch\.orig_size"):
        DetectionScores("voc", tuple(CLASSES)).update(empty, DetectionBatch(batch.image[:1], batch.boxes[:1],
                                                                            batch.labels[:1]))  # fmt: skip


def test_render_draws_only_confident_detections(voc_root, monkeypatch):
    module = DetectionDistiller(model(log_size=1.5), score_thresh=0.0).eval()
    dm = datamodule(voc_root)
    dm.setup("fit")
    batch = next(iter(dm.val_dataloader()))
    with torch.no_grad():
        output = module.student(batch.image)
    drawn: list[list[float]] = []
    monkeypatch.setattr(
        "kd_suite.tasks.detection.module.draw_boxes",
        lambda image, boxes, labels, names, scores=None: drawn.append(scores),
    )
    all_scores = postprocess(output, module.student.strides, 0.0, module.nms_thresh, module.max_det)[0]["scores"]
    module.render(batch, output, n=1)
    assert len(all_scores) > len(drawn[0]), "the untrained net's many low-score boxes are left out of the picture"
    assert all(s >= 0.3 for s in drawn[0])
